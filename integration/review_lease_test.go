package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReviewWriteThroughPutWithoutMountNeedsLease: with write-through
// (archive_after_secs = 0) a put without a mount writes the bucket, so it
// needs the writer lease: while another host's mount holds it, the put is
// refused with one line naming the holder and the bucket is left alone;
// once the lease is free, it runs and reaches the bucket.
func TestReviewWriteThroughPutWithoutMountNeedsLease(t *testing.T) {
	const through = "archive_after_secs = 0\ncheck_interval_secs = 3600\n"
	e := newEnv(t, through)
	m := e.mount()

	h2 := &env{t: t, dir: t.TempDir(), bucket: e.bucket}
	h2.hotPath = filepath.Join(h2.dir, "hot.db")
	cfg, _ := os.ReadFile(e.cfgPath)
	h2.writeConfig(strings.Replace(string(cfg), e.hotPath, h2.hotPath, 1))
	r := h2.run(strings.NewReader("five"), "put", "5")
	t.Logf("put with write-through while another host holds the lease: exit %d: %s", r.code, strings.TrimSpace(r.stderr))
	if r.code == 0 || !strings.Contains(r.stderr, e.hotPath) || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("write-through put while another host's mount holds the lease: exit %d: %q", r.code, r.stderr)
	}
	if e.objectExists(5) {
		t.Fatal("the refused write-through put reached the bucket")
	}
	m.unmount()
	h2.mustRun(strings.NewReader("five"), "put", "5")
	if !e.objectExists(5) {
		t.Fatal("write-through put without a mount, once the lease was free, did not reach the bucket")
	}
}
