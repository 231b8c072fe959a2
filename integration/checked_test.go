package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/internal/faultproxy"
)

// TestUncheckedForeignObject: an object another program wrote into the
// bucket with no checksum anywhere reads through the mount, but scribefs
// stat says "checked: no" and /metrics counts its fetches in
// scribefs_unchecked_cold_fetches_total; a segment scribefs archived says
// "checked: yes" and reading it leaves the counter alone.
func TestUncheckedForeignObject(t *testing.T) {
	e := newEnv(t, "")
	foreign := backendtest.RandomBytes(61, 2<<20+61)
	if _, err := e.s3().PutObject(context.Background(), &s3api.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(61)), Body: bytes.NewReader(foreign)}); err != nil {
		t.Fatal(err)
	}
	ours := e.mustColdSegment(62, backendtest.RandomBytes(62, 2<<20+62))
	addr := freeAddr(t)
	m := e.mount("--metrics-addr", addr)
	if out := e.mustRun(nil, "stat", "61"); !strings.Contains(out, "\nchecked: no\n") {
		t.Fatalf("stat of the foreign object:\n%s", out)
	}
	if out := e.mustRun(nil, "stat", "62"); !strings.Contains(out, "\nchecked: yes\n") {
		t.Fatalf("stat of our segment:\n%s", out)
	}
	sh(t, m.Segs(), "cmp 62 "+ours)
	if v := metricValue(scrape(t, addr), "scribefs_unchecked_cold_fetches_total"); v != 0 {
		t.Fatalf("scribefs_unchecked_cold_fetches_total = %v after reading our segment, want 0", v)
	}
	src := filepath.Join(e.dir, "foreign")
	mustWriteFile(t, src, foreign)
	sh(t, m.Segs(), "cmp 61 "+src)
	v := metricValue(scrape(t, addr), "scribefs_unchecked_cold_fetches_total")
	if v < 1 {
		t.Fatalf("scribefs_unchecked_cold_fetches_total = %v after reading the foreign object, want at least 1", v)
	}
	t.Logf("MEASURED stat: checked: no / yes; unchecked fetches after one cat of the foreign object: %v", v)
}

// TestNonCompressingHostMount: a second host configured without compression
// mounts (read-only, its own empty hot tier) a bucket a zstd-compressing
// host archived into: ls -l and stat show the segment's true size (not the
// stored one) and cmp of the whole segment and a 4 KiB range past the
// first block succeed.
func TestNonCompressingHostMount(t *testing.T) {
	e := newEnv(t, "archive_after_secs = 86400\ncheck_interval_secs = 3600\ncompression = \"zstd\"\n")
	sh(t, e.dir, "{ yes scribefs || true; } | head -c 5242880 > src")
	src := filepath.Join(e.dir, "src")
	e.mustRun(nil, "put", "5", src)
	e.mustRun(nil, "archive", "5")

	h2 := &env{t: t, dir: t.TempDir(), bucket: e.bucket}
	h2.hotPath = filepath.Join(h2.dir, "hot.db")
	cfg, _ := os.ReadFile(e.cfgPath)
	h2.writeConfig(strings.Replace(strings.Replace(string(cfg), e.hotPath, h2.hotPath, 1), `compression = "zstd"`, `compression = "none"`, 1))
	m := h2.mount("--read-only")
	if got := sh(t, m.Segs(), "stat -c %s 5"); strings.TrimSpace(got) != "5242880" {
		t.Fatalf("size on the non-compressing host: %s, want 5242880", got)
	}
	if out := h2.mustRun(nil, "ls", "-l"); !strings.HasPrefix(out, "5 5242880 ") {
		t.Fatalf("ls -l on the non-compressing host: %q", out)
	}
	sh(t, m.Segs(), "cmp 5 "+src)
	got := sh(t, m.Segs(), "dd if=5 bs=4096 skip=700 count=1 status=none")
	data, _ := os.ReadFile(src)
	if got != string(data[700*4096:701*4096]) {
		t.Fatal("4 KiB range on the non-compressing host differs")
	}
}

// TestLargeSegmentCheckedOnSecondHost: a 300 MiB segment (more block sums
// than fit in S3 metadata) archived by one host is read by a second,
// read-only host with its own empty hot tier; a byte flipped by the fault
// proxy in the ranged GET of its 250th MiB is EIO on the mount, never
// wrong bytes, and the same read succeeds once the fault is gone.
func TestLargeSegmentCheckedOnSecondHost(t *testing.T) {
	e, p := newProxyEnv(t, 5, "")
	sh(t, e.dir, "head -c 314572800 /dev/urandom > large")
	e.mustRun(nil, "put", "300", filepath.Join(e.dir, "large"))
	e.mustRun(nil, "archive", "300")

	h2 := &env{t: t, dir: t.TempDir(), bucket: e.bucket}
	h2.hotPath = filepath.Join(h2.dir, "hot.db")
	cfg, _ := os.ReadFile(e.cfgPath)
	h2.writeConfig(strings.Replace(string(cfg), e.hotPath, h2.hotPath, 1))
	m := h2.mount("--read-only")
	ddAt := func(dir, file string) string {
		return fmt.Sprintf("cd %s && dd if=%s bs=4096 skip=%d count=1 status=none | od -An -tx1 | tr -d ' \\n'", dir, file, 250*256+3)
	}
	want := sh(t, e.dir, ddAt(e.dir, "large"))
	p.Set(faultproxy.Fault{Kind: faultproxy.Corrupt, Method: "GET", PathContains: objName(300) + ".bin", After: 3*4096 + 100})
	out, err := shErr(m.Segs(), ddAt(m.Segs(), "300"))
	if err == nil || !strings.Contains(out, "Input/output error") {
		t.Fatalf("flipped byte in a ranged GET on the second host: err %v, bytes equal to the stored: %v", err, strings.TrimSpace(out) == want)
	}
	gets := p.Count("GET", objName(300)+".bin")
	p.Clear()
	if got := sh(t, m.Segs(), ddAt(m.Segs(), "300")); got != want {
		t.Fatal("after the fault: 4 KiB differs")
	}
	t.Logf("MEASURED 300 MiB segment on a second host, flipped byte in a ranged GET: EIO after %d GETs; right bytes once cleared", gets)
}
