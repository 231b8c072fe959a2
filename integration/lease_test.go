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
