package integration

// Adversarial review of `scribefs get ID FILE` and `export` through the
// control socket: an output that fails mid-way (no space) must leave FILE
// as it was and nothing else behind.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scribefs/scribefs/backend/backendtest"
)

func TestReviewCLIGetOutputFull(t *testing.T) {
	e := newEnv(t, "")
	m := e.mount()
	data := backendtest.RandomBytes(90, 1<<20)
	mustWriteFile(t, m.path(9), data)

	out := filepath.Join(t.TempDir(), "out")
	os.Mkdir(out, 0o755)
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", out).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %s %v", b, err)
	}
	t.Cleanup(func() { exec.Command("umount", out).Run() })
	file := filepath.Join(out, "FILE")
	if err := os.WriteFile(file, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	left := func() []string {
		var names []string
		entries, _ := os.ReadDir(out)
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}

	r := e.run(nil, "get", "9", file)
	if r.code == 0 {
		t.Fatalf("get into a full file system exited 0")
	}
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 || !strings.Contains(r.stderr, "no space") {
		t.Errorf("get's error: %q; want one line naming the lack of space", r.stderr)
	}
	if b, _ := os.ReadFile(file); string(b) != "old" {
		t.Fatalf("FILE after a failed get: %d bytes", len(b))
	}
	if l := left(); len(l) != 1 {
		t.Fatalf("left in the output directory: %v", l)
	}

	t.Logf("get: exit %d, %s", r.code, r.stderr)
	r = e.run(nil, "export", out, "9")
	if r.code == 0 {
		t.Fatalf("export into a full file system exited 0")
	}
	t.Logf("export: exit %d, %s", r.code, r.stderr)
	if l := left(); len(l) != 1 {
		t.Fatalf("left in the output directory after export: %v", l)
	}
	// With room, the same get writes exactly the segment.
	exec.Command("mount", "-o", "remount,size=4m", out).Run()
	e.mustRun(nil, "get", "9", file)
	if b, _ := os.ReadFile(file); !bytes.Equal(b, data) {
		t.Fatalf("FILE after get: %d bytes, want %d", len(b), len(data))
	}
}
