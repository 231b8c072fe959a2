package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/internal/faultproxy"
)

// rewriteObject replaces the .bin of id with fn(bytes), keeping its
// metadata (scribefs's own checksums included): damage at rest, as bit rot
// or a buggy copier would leave it.
func (e *env) reviewRewriteObject(t *testing.T, id uint64, fn func([]byte)) {
	t.Helper()
	ctx := context.Background()
	out, err := e.s3().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(id))})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(out.Body)
	out.Body.Close()
	fn(raw)
	if _, err := e.s3().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(id)),
		Body: bytes.NewReader(raw), Metadata: out.Metadata, ContentType: out.ContentType}); err != nil {
		t.Fatal(err)
	}
}

// TestReviewVerifySeesWhatNodesRefuse: with compression = "gzip", the
// bytes a node depends on but scribefs's block reads skip (the data
// member's 10-byte gzip header and its CRC32/ISIZE close) are damaged at
// rest. A node then gets no segment (GzDecoder error). scribefs verify,
// which promises to report "each problem" with cold segments, should name
// the segment; and the mount's whole read should not serve bytes a node
// cannot.
func TestReviewVerifySeesWhatNodesRefuse(t *testing.T) {
	e := newEnv(t, "archive_after_secs = 86400\ncheck_interval_secs = 3600\ncompression = \"gzip\"\n")
	body := nodeSegment(5, 1, 20, 100000) // 2 MiB: several blocks
	path := filepath.Join(e.dir, "5")
	mustWriteFile(t, path, body)
	e.mustRun(nil, "put", "5", path)
	e.mustRun(nil, "archive", "5")
	if got := e.describe(5, body); !strings.HasPrefix(got, "segment 5") {
		t.Fatalf("node read before damage: %s", got)
	}
	e.reviewRewriteObject(t, 5, func(b []byte) { b[0] ^= 0xff }) // gzip magic
	got := e.describe(5, body)
	t.Logf("node after the gzip header is damaged: %s", got)
	if !strings.HasPrefix(got, "ERROR") {
		t.Fatalf("node read a damaged object: %s", got)
	}
	// The object's version changed: let the index adopt it first, so what
	// is left to report is the damage itself.
	rr := e.run(nil, "verify", "--repair")
	t.Logf("verify --repair (exit %d):\n%s%s", rr.code, rr.stdout, rr.stderr)
	r := e.run(nil, "verify")
	t.Logf("verify (exit %d):\n%s%s", r.code, r.stdout, r.stderr)
	if strings.Contains(r.stdout, "drift") {
		t.Fatalf("verify still reports drift after --repair:\n%s", r.stdout)
	}
	if r.code == 0 || !strings.Contains(r.stdout, "segment 5") {
		t.Fatalf("verify reports no problem for segment 5, which no node can read: exit %d\n%s", r.code, r.stdout)
	}
}

// TestReviewNodeSidecarRenameOnto: a node archived segment 99 (whole-stream
// gzip, is_compressed); a scribefs segment is renamed onto 99 through the
// mount and archived with compression none: the node then reads the new
// segment (plain, is_compressed false), never the new bytes through the
// old sidecar; scribefs reads the new bytes too.
func TestReviewNodeSidecarRenameOnto(t *testing.T) {
	e := newEnv(t, "archive_after_secs = 86400\ncheck_interval_secs = 3600\ncompression = \"none\"\n")
	up := nodeSegment(99, 5, 30, 1000)
	var gz bytes.Buffer
	zwrite(&gz, up)
	e.putRaw(t, objectKey(99), gz.Bytes())
	e.putRaw(t, "segments/segment-0000000000000063.meta.json", []byte(fmt.Sprintf(
		`{"segment_id":99,"created_at":5,"archived_at":6,"original_size":%d,"compressed_size":%d,"is_compressed":true,"entry_count":30}`,
		30*1007, gz.Len())))
	if got := e.describe(99, up); !strings.HasPrefix(got, "segment 99") {
		t.Fatalf("node's own segment: %s", got)
	}
	m := e.mount()
	nb := nodeSegment(7, 9, 12, 3000)
	mustWriteFile(t, filepath.Join(e.dir, "n"), nb)
	sh(t, m.Segs(), "cp "+filepath.Join(e.dir, "n")+" 7 && mv 7 99")
	// Before archival the node still sees its own segment, consistently.
	if got := e.describe(99, up); !strings.HasPrefix(got, "segment 99") {
		t.Errorf("node before archival of the renamed segment: %s", got)
	}
	m.unmount()
	e.mustRun(nil, "archive", "99")
	got := e.describe(99, nb)
	t.Logf("node after rename onto its id and archive: %s", got)
	if !strings.HasPrefix(got, "segment ") {
		t.Fatalf("node got %q", got)
	}
	m = e.mount()
	if b, err := shErr(m.Segs(), "cmp 99 "+filepath.Join(e.dir, "n")+" && echo same"); err != nil || !strings.Contains(b, "same") {
		t.Fatalf("mount read of 99 after archive: %q %v", b, err)
	}
}

func zwrite(w io.Writer, b []byte) {
	zw := gzip.NewWriter(w)
	zw.Write(b)
	zw.Close()
}

// TestReviewArchiveSidecarFailureNodeReadsWrong: a node archived segment
// 77 plain (is_compressed false, with its sidecar). scribefs (compression
// gzip) archives a new version of 77 while the store refuses every PUT and
// DELETE of .meta.json keys (a bucket policy, an outage that begins right
// after the .bin PUT, or a crash at that point). The archive fails, but
// the .bin is already replaced: a node then reads scribefs's gzip object
// through its own old sidecar (is_compressed false) and gets garbage or an
// error instead of either version. ledger.go promises "a node never pairs
// new bytes with an old sidecar".
func TestReviewArchiveSidecarFailureNodeReadsWrong(t *testing.T) {
	e, p := newProxyEnv(t, 5, "")
	cfg, _ := os.ReadFile(e.cfgPath)
	e.writeConfig(string(cfg) + "compression = \"gzip\"\n")
	old := nodeSegment(77, 5, 30, 1000)
	e.putRaw(t, objectKey(77), old)
	e.putRaw(t, "segments/segment-000000000000004d.meta.json", []byte(fmt.Sprintf(
		`{"segment_id":77,"created_at":5,"archived_at":6,"original_size":%d,"compressed_size":%d,"is_compressed":false,"entry_count":30}`,
		30*1007, len(old))))
	if got := e.describe(77, old); !strings.HasPrefix(got, "segment 77") {
		t.Fatalf("node's own segment: %s", got)
	}
	nb := nodeSegment(77, 9, 40, 2000)
	path := filepath.Join(e.dir, "n")
	mustWriteFile(t, path, nb)
	e.mustRun(nil, "put", "77", path)
	p.Set(
		faultproxy.Fault{Kind: faultproxy.Error, Method: "PUT", PathContains: ".meta.json", Status: 403, Code: "AccessDenied"},
		faultproxy.Fault{Kind: faultproxy.Error, Method: "DELETE", PathContains: ".meta.json", Status: 403, Code: "AccessDenied"},
	)
	r := e.run(nil, "archive", "77")
	t.Logf("archive with sidecar writes refused: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	p.Clear()
	got := e.describe(77, nil)
	t.Logf("node reads: %s", got)
	switch {
	case got == "no such segment":
	case strings.HasPrefix(got, "segment 77"):
		if !strings.HasPrefix(e.describe(77, old), "segment") && !strings.HasPrefix(e.describe(77, nb), "segment") {
			t.Fatalf("node reads a segment that is neither version: %s", got)
		}
	default:
		t.Errorf("after a failed archive a node gets %q: neither the old segment, the new one, nor none", got)
	}
	// Once the store accepts sidecars again, archiving again heals it.
	e.mustRun(nil, "archive", "77")
	if got := e.describe(77, nb); !strings.HasPrefix(got, "segment 77") {
		t.Fatalf("after a second archive with the store healthy, node gets %q", got)
	}
}

// TestReviewVerifyMerkleSegmentLargerThanCache: verify_merkle with a cache
// of 2 MiB and a 12 MiB gzip segment: a whole read of a good segment
// returns its bytes, and of one whose sidecar root was altered fails with
// EIO, even though the check must fetch blocks the cache no longer holds.
func TestReviewVerifyMerkleSegmentLargerThanCache(t *testing.T) {
	e := newEnv(t, "archive_after_secs = 86400\ncheck_interval_secs = 3600\ncompression = \"gzip\"\nverify_merkle = true\n")
	cfg, _ := os.ReadFile(e.cfgPath)
	e.writeConfig(strings.Replace(string(cfg), `max_bytes = "64MiB"`, `max_bytes = "2MiB"`, 1))
	bodies := map[uint64][]byte{}
	for _, id := range []uint64{5, 6} {
		bodies[id] = nodeSegment(id, 1, 60, 200000) // 12 MiB
		path := filepath.Join(e.dir, fmt.Sprint(id))
		mustWriteFile(t, path, bodies[id])
		e.mustRun(nil, "put", fmt.Sprint(id), path)
	}
	e.mustRun(nil, "archive", "--all")
	e.alterRoot(t, 6)
	m := e.mount()
	out, err := shErr(m.Segs(), "cmp 5 "+filepath.Join(e.dir, "5")+" && echo same")
	if err != nil || !strings.Contains(out, "same") {
		t.Fatalf("whole read of a good 12 MiB segment with a 2 MiB cache: %q, %v", out, err)
	}
	out, err = shErr(m.Segs(), "cat 6 > /dev/null")
	if err == nil || !strings.Contains(out, "Input/output error") {
		t.Fatalf("whole read of segment 6 (root altered): %q, %v; want EIO", out, err)
	}
	t.Logf("cat 6: %s", strings.TrimSpace(out))
}

// TestReviewVerifyMerklePartialTailRead: with verify_merkle, only a WHOLE
// read is checked ("a read of part of the damaged one still works",
// TestVerifyMerkleOnRead). A read of only the last 100 bytes of a 3 MiB
// segment whose sidecar root was altered (tail -c, dd skip to the end) is
// a partial read and should succeed.
func TestReviewVerifyMerklePartialTailRead(t *testing.T) {
	e := newEnv(t, "archive_after_secs = 86400\ncheck_interval_secs = 3600\ncompression = \"gzip\"\nverify_merkle = true\n")
	body := nodeSegment(6, 1, 30, 100000) // 3 MiB
	path := filepath.Join(e.dir, "6")
	mustWriteFile(t, path, body)
	e.mustRun(nil, "put", "6", path)
	e.mustRun(nil, "archive", "6")
	e.alterRoot(t, 6)
	m := e.mount()
	out, err := shErr(m.Segs(), fmt.Sprintf("dd if=6 bs=100 skip=%d count=1 status=none | wc -c", (len(body)-100)/100))
	t.Logf("read of the last 100 bytes: %q, %v", strings.TrimSpace(out), err)
	if err != nil || strings.TrimSpace(out) != "100" {
		t.Fatalf("partial read of the last 100 bytes of a segment whose root mismatches: %q, %v", out, err)
	}
}
