package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests pin down, through the real binary, when a change made through
// the mount is in the store: each kills the mount with SIGKILL right after
// the system call that promises it, and reads the store back through a new
// mount. Descriptors are held by ../testdata/fdctl.py, so each system call
// and its result are explicit.

// fdctl is a process holding descriptors (testdata/fdctl.py).
type fdctl struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    *os.File
	lines chan string
}

func startFdctl(t *testing.T) *fdctl {
	t.Helper()
	cmd := exec.Command("python3", "../testdata/fdctl.py")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &fdctl{t: t, cmd: cmd, lines: make(chan string, 16)}
	c.in = in.(*os.File)
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("fdctl stderr: %s", stderr.String())
		}
	})
	return c
}

// do runs one command and returns the reply: "ok" or "err ENAME".
func (c *fdctl) do(cmd string) string {
	c.t.Helper()
	if _, err := c.in.WriteString(cmd + "\n"); err != nil {
		c.t.Fatal(err)
	}
	select {
	case line, ok := <-c.lines:
		if !ok {
			c.t.Fatalf("fdctl ended during %q", cmd)
		}
		return line
	case <-time.After(30 * time.Second):
		c.t.Fatalf("fdctl: no reply to %q", cmd)
	}
	return ""
}

// must runs commands that must succeed.
func (c *fdctl) must(cmds ...string) {
	c.t.Helper()
	for _, cmd := range cmds {
		if got := c.do(cmd); got != "ok" {
			c.t.Fatalf("fdctl %q: %s", cmd, got)
		}
	}
}

// mustContents reads segment id through mount m: want, or absent when want
// is nil.
func mustContents(t *testing.T, m *mount, id uint64, want *string) {
	t.Helper()
	got, err := os.ReadFile(m.path(id))
	switch {
	case want == nil && err == nil:
		t.Fatalf("segment %d exists (%q), want none", id, got)
	case want == nil && os.IsNotExist(err):
	case want == nil:
		t.Fatalf("segment %d: %v, want ENOENT", id, err)
	case err != nil:
		t.Fatalf("segment %d: %v, want %q", id, err, *want)
	case string(got) != *want:
		t.Fatalf("segment %d = %q, want %q", id, got, *want)
	}
}

func ptr(s string) *string { return &s }

// TestFsyncOfAnotherDescriptorSurvivesKill: bytes written through one
// descriptor are in the store once fsync of another descriptor of the file
// (or `sync FILE`) returns, while the writer still holds the file open.
func TestFsyncOfAnotherDescriptorSurvivesKill(t *testing.T) {
	e := newEnv(t, "")
	e.mustRun(strings.NewReader("old"), "put", "3")
	m := e.mount()
	c := startFdctl(t)
	// 1: new file, fsync of a second descriptor opened read-only.
	c.must("open w1 "+m.path(1)+" wronly,creat", "write w1 written via fd1", "open r1 "+m.path(1)+" rdonly", "fsync r1")
	// 2: new file, fsync of a second descriptor opened for writing.
	c.must("open w2 "+m.path(2)+" wronly,creat,trunc", "write w2 second", "open o2 "+m.path(2)+" wronly", "fsync o2")
	// 3: existing segment appended to, then `sync FILE` from elsewhere.
	c.must("open w3 "+m.path(3)+" wronly,append", "write w3 +appended")
	sh(t, e.dir, "sync "+m.path(3))
	m.kill()

	m2 := e.mount()
	mustContents(t, m2, 1, ptr("written via fd1"))
	mustContents(t, m2, 2, ptr("second"))
	mustContents(t, m2, 3, ptr("old+appended"))
}

// TestCloseOfCreateOrTruncSurvivesKill: a file only created, or only
// emptied by O_TRUNC, is in the store once close returns; a duplicate
// descriptor keeps the file open, so nothing but that close publishes it.
func TestCloseOfCreateOrTruncSurvivesKill(t *testing.T) {
	e := newEnv(t, "")
	for _, id := range []string{"2", "4"} {
		e.mustRun(strings.NewReader("old contents "+id), "put", id)
	}
	m := e.mount()
	c := startFdctl(t)
	c.must("open f1 "+m.path(1)+" wronly,creat", "dup f1 g1", "close f1")
	c.must("open f2 "+m.path(2)+" wronly,trunc", "dup f2 g2", "close f2")
	// And the shell's ways, each closed before the kill.
	sh(t, e.dir, "touch "+m.path(3)+"; : > "+m.path(4))
	m.kill()

	m2 := e.mount()
	for _, id := range []uint64{1, 2, 3, 4} {
		mustContents(t, m2, id, ptr(""))
	}
}

// TestSpoolCleanupKeepsOtherFiles: starting a mount removes the spool files
// a killed mount left, and nothing else that is in the spool directory.
func TestSpoolCleanupKeepsOtherFiles(t *testing.T) {
	e := newEnv(t, "")
	spool := filepath.Join(filepath.Dir(e.hotPath), "spool")
	if err := os.MkdirAll(filepath.Join(spool, "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	ours := []string{".scribefs-spool-123456", ".scribefs-spool-4294967295"}
	others := []string{"notes.txt", ".scribefs-spool-mine", "scribefs-spool-1", ".bashrc"}
	for _, name := range append(append([]string{}, ours...), others...) {
		mustWriteFile(t, filepath.Join(spool, name), []byte(name))
	}
	m := e.mount()
	// The spool still works.
	sh(t, e.dir, "printf spooled > "+m.path(1))
	mustContents(t, m, 1, ptr("spooled"))
	for _, name := range ours {
		if _, err := os.Stat(filepath.Join(spool, name)); !os.IsNotExist(err) {
			t.Errorf("left-over spool file %s not removed: %v", name, err)
		}
	}
	for _, name := range append(others, "subdir") {
		if _, err := os.Stat(filepath.Join(spool, name)); err != nil {
			t.Errorf("%s in the spool directory: %v", name, err)
		}
	}
	if !strings.Contains(m.logs.String(), "count=2") {
		t.Errorf("removal not logged with count=2:\n%s", m.logs.String())
	}
}

// TestSocketRmOfOpenFile: `scribefs rm ID` beside a running mount does to a
// file open for writing what unlink through the mount does: rm succeeds, the
// segment is gone at once (also for the kernel), the writer's further writes
// and close succeed, and that close does not store the file again, neither
// for an existing segment nor for a file still being created.
func TestSocketRmOfOpenFile(t *testing.T) {
	e := newEnv(t, "")
	for _, id := range []string{"1", "2"} {
		e.mustRun(strings.NewReader("stored "+id), "put", id)
	}
	m := e.mount()
	for _, tc := range []struct {
		name  string
		id    uint64
		flags string
		rm    func(id uint64) error
	}{
		{"mount unlink, existing", 1, "wronly,append", func(id uint64) error { return os.Remove(m.path(id)) }},
		{"socket rm, existing", 2, "wronly,append", func(id uint64) error { return socketRm(e, id) }},
		{"mount unlink, being created", 3, "wronly,creat,excl", func(id uint64) error { return os.Remove(m.path(id)) }},
		{"socket rm, being created", 4, "wronly,creat,excl", func(id uint64) error { return socketRm(e, id) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startFdctl(t)
			c.must("open w "+m.path(tc.id)+" "+tc.flags, "write w before rm")
			if _, err := os.Stat(m.path(tc.id)); err != nil {
				t.Fatal(err)
			}
			if err := tc.rm(tc.id); err != nil {
				t.Fatalf("rm: %v", err)
			}
			if _, err := os.Stat(m.path(tc.id)); !os.IsNotExist(err) {
				t.Fatalf("stat right after rm: %v, want ENOENT", err)
			}
			c.must("write w after rm", "fsync w", "close w")
			mustContents(t, m, tc.id, nil)
			if r := e.run(nil, "stat", itoa(tc.id)); r.code != 1 || !strings.Contains(r.stderr, "not found") {
				t.Fatalf("scribefs stat after the writer closed: exit %d %q", r.code, r.stderr)
			}
		})
	}
	// A segment that does not exist: the same answer with and without the
	// mount.
	rmMissing := func() result { return e.run(nil, "rm", "999") }
	mounted := rmMissing()
	m.unmount()
	if got := e.mustRun(nil, "ls"); got != "" {
		t.Fatalf("segments after unmount: %q, want none", got)
	}
	if alone := rmMissing(); mounted != alone || alone.code != 1 || !strings.Contains(alone.stderr, "segment 999: not found") {
		t.Fatalf("rm of a missing segment: %+v beside the mount, %+v without", mounted, alone)
	}
}

// socketRm runs `scribefs rm ID`, which a running mount serves over its
// control socket.
func socketRm(e *env, id uint64) error {
	if r := e.run(nil, "rm", itoa(id)); r.code != 0 {
		return fmt.Errorf("scribefs rm %d: exit %d: %s", id, r.code, strings.TrimSpace(r.stderr))
	}
	return nil
}

func itoa(id uint64) string { return strconv.FormatUint(id, 10) }
