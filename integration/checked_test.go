package integration

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend/backendtest"
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
