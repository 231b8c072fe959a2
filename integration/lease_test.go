package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWriterLease: a second writable mount of the same bucket and prefix is
// refused with the holder named; a read-only one is fine; --take-over wins;
// the first holder restarting after kill -9 gets the lease back at once.
func TestWriterLease(t *testing.T) {
	e := newEnv(t, "")
	m := e.mount()

	h2 := &env{t: t, dir: t.TempDir(), bucket: e.bucket}
	h2.hotPath = filepath.Join(h2.dir, "hot.db")
	cfg, _ := os.ReadFile(e.cfgPath)
	h2.writeConfig(strings.Replace(string(cfg), e.hotPath, h2.hotPath, 1))
	mnt2 := filepath.Join(h2.dir, "mnt")
	os.MkdirAll(mnt2, 0o755)
	out, err := exec.Command(scribefs, "--config", h2.cfgPath, "mount", mnt2).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "writable mount by") || !strings.Contains(string(out), e.hotPath) || strings.Count(string(out), "\n") != 1 {
		t.Fatalf("second writer: %v: %s", err, out)
	}
	ro := h2.mountAt(mnt2, "--read-only")
	ro.unmount()

	// the first holder dies; restarting it gets the lease at once
	m.kill()
	start := time.Now()
	m = e.mount()
	t.Logf("same holder remounted after kill -9 in %v", time.Since(start).Round(time.Millisecond))

	taker := h2.mountAt(mnt2, "--take-over")
	sh(t, taker.Segs(), "printf taken > 1")
	taker.unmount()
	_ = m
}

// TestCommandsWithoutMountTakeLease: commands that change the bucket
// without a mount (rm, archive) take the writer lease for their duration:
// with no other holder they run (and give it back), while another host's
// mount holds it they are refused with one line naming the holder, and the
// bucket is left alone.
func TestCommandsWithoutMountTakeLease(t *testing.T) {
	e := newEnv(t, "")
	e.mustRun(strings.NewReader("one"), "put", "1")
	e.mustRun(nil, "archive", "1") // no holder: takes the lease and releases it
	if !e.objectExists(1) {
		t.Fatal("archive without a mount did not reach the bucket")
	}
	m := e.mount()

	h2 := &env{t: t, dir: t.TempDir(), bucket: e.bucket}
	h2.hotPath = filepath.Join(h2.dir, "hot.db")
	cfg, _ := os.ReadFile(e.cfgPath)
	h2.writeConfig(strings.Replace(string(cfg), e.hotPath, h2.hotPath, 1))
	for _, args := range [][]string{{"rm", "1"}, {"archive", "2"}} {
		if args[0] == "archive" {
			h2.mustRun(strings.NewReader("two"), "put", "2") // the hot tier needs no lease
		}
		r := h2.run(nil, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "needs the bucket's writer lease") || !strings.Contains(r.stderr, e.hotPath) || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("%v while another host's mount holds the lease: exit %d: %s", args, r.code, r.stderr)
		}
		t.Logf("%v refused: %s", args, strings.TrimSpace(r.stderr))
	}
	if !e.objectExists(1) || e.objectExists(2) {
		t.Fatalf("the bucket changed under the holder: object 1 %v (want true), object 2 %v (want false)", e.objectExists(1), e.objectExists(2))
	}
	m.unmount() // releases the lease
	h2.mustRun(nil, "rm", "1")
	if e.objectExists(1) {
		t.Fatal("rm without a mount, once the lease was free, left the object")
	}
}
