package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/internal/miniotest"
)

var (
	minio     *miniotest.Server
	scribefs  string // the binary under test
	setupSkip string // why tests skip on a developer machine
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "scribefs-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	scribefs = filepath.Join(dir, "scribefs")
	build := exec.Command("go", "build", "-o", scribefs, "../cmd/scribefs")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building scribefs:", err)
		return 1
	}
	srv, stop, err := miniotest.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	if srv == nil {
		setupSkip = "MinIO server binary not found; run `make minio`"
	} else {
		minio = srv
		defer stop()
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "integration: /dev/fuse is missing; CI must not skip FUSE tests")
			return 1
		}
		setupSkip = "/dev/fuse missing"
	}
	return m.Run()
}

// env is one test's store: its own hot tier and bucket on the shared MinIO.
type env struct {
	t       *testing.T
	dir     string
	bucket  string
	cfgPath string
	hotPath string
}

func requireSetup(t *testing.T) {
	t.Helper()
	if setupSkip != "" {
		if os.Getenv("CI") != "" {
			t.Fatal(setupSkip)
		}
		t.Skip(setupSkip)
	}
}

// newEnv makes a store with a cold tier on MinIO. tiering is TOML for the
// [tiering] section (empty: archive only on demand).
func newEnv(t *testing.T, tiering string) *env {
	t.Helper()
	requireSetup(t)
	e := &env{t: t, dir: t.TempDir(), bucket: minio.NewBucket(t)}
	e.hotPath = filepath.Join(e.dir, "hot", "hot.db")
	if tiering == "" {
		tiering = "archive_after_secs = 86400\ncheck_interval_secs = 3600\n"
	}
	e.writeConfig(fmt.Sprintf(`[storage.hot]
path = %q

[storage.s3]
bucket = %q
region = %q
endpoint = %q
access_key_id = %q
secret_access_key = %q
path_style = true
timeout_secs = 5
max_retries = 2
refresh_secs = 2

[cache]
max_bytes = "64MiB"

[tiering]
%s`, e.hotPath, e.bucket, miniotest.Region, minio.Endpoint, miniotest.AccessKey, miniotest.SecretKey, tiering))
	return e
}

func (e *env) writeConfig(body string) {
	e.cfgPath = filepath.Join(e.dir, "config.toml")
	if err := os.WriteFile(e.cfgPath, []byte(body), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs the scribefs binary with the env's config.
func (e *env) run(stdin io.Reader, args ...string) result {
	e.t.Helper()
	return runScribefs(e.t, stdin, append([]string{"--config", e.cfgPath}, args...)...)
}

func runScribefs(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, scribefs, args...)
	cmd.Env = cleanEnv()
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("scribefs %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// cleanEnv keeps the test's environment away from the S3_* overrides.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "S3_") && !strings.HasPrefix(kv, "SCRIBEFS_") {
			env = append(env, kv)
		}
	}
	return env
}

// mustRun runs scribefs and fails the test unless it exits 0.
func (e *env) mustRun(stdin io.Reader, args ...string) string {
	e.t.Helper()
	r := e.run(stdin, args...)
	if r.code != 0 {
		e.t.Fatalf("scribefs %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

func (e *env) s3() *s3.Client { return minio.Client() }

// objectKey is where Scribe Ledger (and scribefs) keep segment id.
func objectKey(id uint64) string { return fmt.Sprintf("segments/segment-%016x.bin", id) }

func (e *env) objectBytes(id uint64) ([]byte, error) {
	out, err := e.s3().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(id))})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

func (e *env) objectExists(id uint64) bool {
	_, err := e.s3().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(id))})
	return err == nil
}

func mustWriteFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// mount is a scribefs mount served by a child process.
type mount struct {
	e    *env
	dir  string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
}

// Segs is the segments directory of the mount.
func (m *mount) Segs() string { return filepath.Join(m.dir, "segments") }

// path of segment id in the mount.
func (m *mount) path(id uint64) string { return filepath.Join(m.Segs(), fmt.Sprint(id)) }

func (e *env) mount(args ...string) *mount {
	e.t.Helper()
	dir := filepath.Join(e.dir, fmt.Sprintf("mnt%d", time.Now().UnixNano()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	return e.mountAt(dir, args...)
}

func (e *env) mountAt(dir string, args ...string) *mount {
	e.t.Helper()
	full := append([]string{"--config", e.cfgPath, "mount"}, args...)
	full = append(full, dir)
	cmd := exec.Command(scribefs, full...)
	cmd.Env = cleanEnv()
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	m := &mount{e: e, dir: dir, cmd: cmd, logs: logs, done: make(chan error, 1)}
	go func() { m.done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, err := os.Stat(m.Segs()); err == nil && st.IsDir() {
			break
		}
		select {
		case err := <-m.done:
			e.t.Fatalf("scribefs mount exited early (%v): %s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			m.kill()
			e.t.Fatalf("mount not ready after 30s: %s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Cleanup(func() { m.unmount() })
	return m
}

// unmount stops the mount with SIGTERM and waits for the process.
func (m *mount) unmount() {
	if m.cmd.ProcessState != nil {
		return
	}
	select {
	case <-m.done:
		return
	default:
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.done:
		if err != nil {
			m.e.t.Errorf("scribefs mount exited with %v: %s", err, m.logs.String())
		}
	case <-time.After(60 * time.Second):
		m.kill()
		m.e.t.Errorf("mount did not stop within 60s of SIGTERM")
	}
}

// kill stops the mount as a crash would, and clears the dead mount point.
func (m *mount) kill() {
	m.cmd.Process.Kill()
	<-m.done
	m.done <- nil // later unmount calls return at once
	exec.Command("umount", "-l", m.dir).Run()
}

// sh runs a shell command line (from this process, never the server).
func sh(t *testing.T, dir, script string) string {
	t.Helper()
	out, err := shErr(dir, script)
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return out
}

func shErr(dir, script string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", "set -euo pipefail; "+script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}
