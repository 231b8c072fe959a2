package fs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scribefs/scribefs/segment"
)

// serveEnv makes the test binary serve an in-memory store at $dir/mnt
// instead of running tests: the posix tests use it to access a mount with
// plain os calls, which the process serving a mount must not do.
const serveEnv = "SCRIBEFS_FS_TEST_SERVE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(serveEnv); dir != "" {
		os.Exit(serveForTest(dir))
	}
	os.Exit(m.Run())
}

// serveForTest mounts a fresh memStore at dir/mnt, says "ready" on stdout,
// and serves until stdin is closed or a signal arrives.
func serveForTest(dir string) int {
	spool := filepath.Join(dir, "spool")
	mnt := filepath.Join(dir, "mnt")
	for _, d := range []string{spool, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := Mount(mnt, newMemStore(spool, 1<<30), Options{Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop <- syscall.SIGTERM
	}()
	go func() {
		<-stop
		if err := srv.Shutdown(5 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	srv.Wait()
	return 0
}

// requireFUSE skips the test when FUSE is unavailable, except in CI.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("FUSE is required in CI: %v", err)
		}
		t.Skipf("FUSE unavailable: %v", err)
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("CI must run as root or have fusermount3 (make deps installs fuse3): %v", err)
			}
			t.Skipf("not root and no fusermount3: %v", err)
		}
	}
}

// logBuffer collects the mount's log; it is shown when a test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testMount struct {
	store *memStore
	srv   *Server
	mnt   string // the mountpoint
	seg   string // mnt/segments
	log   *logBuffer
}

// path returns the path of a name in the segments directory.
func (m *testMount) path(name string) string { return filepath.Join(m.seg, name) }

func newTestStore(t *testing.T, max int64) *memStore {
	return newMemStore(t.TempDir(), max)
}

// mustMount mounts store in this process; the test must then touch the
// mount only through subprocesses. It is unmounted when the test ends.
func mustMount(t *testing.T, store *memStore, opts Options) *testMount {
	t.Helper()
	requireFUSE(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	return mustMountAt(t, mnt, store, opts)
}

func mustMountAt(t *testing.T, mnt string, store *memStore, opts Options) *testMount {
	t.Helper()
	logs := &logBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := Mount(mnt, store, opts)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(5 * time.Second); err != nil {
			t.Errorf("Shutdown: %v", err)
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		if t.Failed() {
			t.Logf("mount log:\n%s", logs.String())
		}
	})
	return &testMount{store: store, srv: srv, mnt: mnt, seg: filepath.Join(mnt, "segments"), log: logs}
}

// run runs a command (never in the mount's directory: a chdir into the mount
// from a child of the serving process could deadlock) and returns its
// stdout; the error includes stderr.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(t, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sh runs a shell script; args are $1, $2, …
func sh(t *testing.T, script string, args ...string) (string, error) {
	t.Helper()
	return run(t, "sh", append([]string{"-c", script, "sh"}, args...)...)
}

func mustSh(t *testing.T, script string, args ...string) string {
	t.Helper()
	out, err := sh(t, script, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mustFail runs a command that must fail with a message containing want.
func mustFail(t *testing.T, want string, name string, args ...string) {
	t.Helper()
	_, err := run(t, name, args...)
	if err == nil {
		t.Fatalf("%s %s succeeded, want failure %q", name, strings.Join(args, " "), want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("%s %s: got %v, want %q", name, strings.Join(args, " "), err, want)
	}
}

// heldShell is a shell script running in the background that talks over
// stdin/stdout, to hold files open across steps of a test.
type heldShell struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	lines chan string
}

func startSh(t *testing.T, script string, args ...string) *heldShell {
	t.Helper()
	return startCmd(t, "sh", append([]string{"-c", script, "sh"}, args...)...)
}

func startCmd(t *testing.T, name string, args ...string) *heldShell {
	t.Helper()
	cmd := exec.Command(name, args...)
	in, out, stderr := mustStartPiped(t, cmd)
	h := &heldShell{t: t, cmd: cmd, in: in, out: bufio.NewReader(out), lines: make(chan string, 16)}
	go func() {
		defer close(h.lines)
		for {
			line, err := h.out.ReadString('\n')
			if line != "" {
				h.lines <- strings.TrimSuffix(line, "\n")
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		h.cmd.Process.Kill()
		h.cmd.Wait()
		if t.Failed() {
			t.Logf("held shell stderr: %s", stderr.String())
		}
	})
	return h
}

// holdWriterScript opens $1 for writing (mode trunc or append), writes $3,
// says "ready", and closes the file when told: unlike a shell redirection it
// never closes a duplicate descriptor (which flushes) in between.
const holdWriterScript = `
import os, sys
flags = {'trunc': os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 'append': os.O_WRONLY | os.O_APPEND | os.O_CREAT}[sys.argv[2]]
fd = os.open(sys.argv[1], flags, 0o644)
os.write(fd, sys.argv[3].encode())
print("ready", flush=True)
sys.stdin.readline()
try:
    os.close(fd)
    print("closed", flush=True)
except OSError as e:
    print("close failed: %d" % e.errno, flush=True)
sys.stdin.readline()
`

// startWriter holds path open for writing, with data written, until close.
func startWriter(t *testing.T, path, mode, data string) *heldShell {
	t.Helper()
	h := startCmd(t, "python3", "-c", holdWriterScript, path, mode, data)
	h.expect("ready")
	return h
}

// expect waits for the next line of output.
func (h *heldShell) expect(want string) {
	h.t.Helper()
	select {
	case line, ok := <-h.lines:
		if !ok {
			h.t.Fatalf("shell ended, want line %q", want)
		}
		if line != want {
			h.t.Fatalf("shell said %q, want %q", line, want)
		}
	case <-time.After(20 * time.Second):
		h.t.Fatalf("timeout waiting for %q", want)
	}
}

func (h *heldShell) send(line string) {
	h.t.Helper()
	if _, err := io.WriteString(h.in, line+"\n"); err != nil {
		h.t.Fatal(err)
	}
}

// wait waits for the shell to exit and returns its error.
func (h *heldShell) wait() error {
	h.in.Close()
	return h.cmd.Wait()
}

// mustWriteTemp writes data to a new file outside the mount.
func mustWriteTemp(t *testing.T, data []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// mustStored checks the stored bytes of a segment.
func mustStored(t *testing.T, s *memStore, id segment.ID, want string) {
	t.Helper()
	got, ok := s.get(id)
	if !ok {
		t.Fatalf("segment %d not stored, want %q", id, abbreviate(want))
	}
	if string(got) != want {
		t.Fatalf("segment %d = %q, want %q", id, abbreviate(string(got)), abbreviate(want))
	}
}

// eventuallyStored is mustStored for files that were only created or
// emptied: those are published by RELEASE, which the kernel sends after
// close(2) has returned.
func eventuallyStored(t *testing.T, s *memStore, id segment.ID, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if got, ok := s.get(id); ok && string(got) == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	mustStored(t, s, id, want)
}

func mustNotStored(t *testing.T, s *memStore, id segment.ID) {
	t.Helper()
	if got, ok := s.get(id); ok {
		t.Fatalf("segment %d stored (%q), want none", id, abbreviate(string(got)))
	}
}

func abbreviate(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%s…(%d bytes)", s[:64], len(s))
	}
	return s
}

// mustStartPiped starts cmd with pipes to its stdin and stdout and its
// stderr collected.
func mustStartPiped(t *testing.T, cmd *exec.Cmd) (io.WriteCloser, io.ReadCloser, *logBuffer) {
	t.Helper()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &logBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return in, out, stderr
}
