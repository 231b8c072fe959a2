package s3

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/internal/faultproxy"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/segment/ledger"
)

// reviewNodeRead reads id as an upstream node does: sidecar first (none: no
// segment), then the plain .bin, decoded. It returns whether the node sees
// a segment and, if so, the sidecar and the decoded segment.
func reviewNodeRead(t *testing.T, b *Backend, id segment.ID) (ledger.Sidecar, *ledger.Segment, bool) {
	t.Helper()
	sc, ok := mustSidecar(t, b, id)
	if !ok {
		return sc, nil, false
	}
	out, err := b.client.GetObject(ctx, &s3api.GetObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.key(id))})
	if err != nil {
		t.Fatalf("node: sidecar present, .bin unreadable: %v", err)
	}
	raw, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if sc.IsCompressed {
		t.Fatalf("node: unexpected is_compressed in this test")
	}
	seg, err := ledger.Decode(raw)
	if err != nil {
		t.Fatalf("node: sidecar present, .bin does not decode: %v", err)
	}
	return sc, seg, true
}

// checkSidecarDescribes fails when the sidecar a node would use does not
// describe the .bin beside it.
func checkSidecarDescribes(t *testing.T, b *Backend, id segment.ID) {
	t.Helper()
	sc, seg, ok := reviewNodeRead(t, b, id)
	if !ok {
		return // the node sees no segment: acceptable, never wrong
	}
	root, _ := ledger.MerkleRoot(seg.Entries)
	var got string
	if sc.MerkleRoot != nil {
		got = sc.MerkleRoot.String()
	}
	if sc.EntryCount != uint64(len(seg.Entries)) || sc.CreatedAt != seg.Timestamp || got != root.String() {
		t.Fatalf("a node pairs the .bin (timestamp %d, %d entries, root %s) with a sidecar describing other bytes (created_at %d, entry_count %d, merkle_root %s)",
			seg.Timestamp, len(seg.Entries), root, sc.CreatedAt, sc.EntryCount, got)
	}
}

// TestReviewOverwriteSidecarUnwritable: an overwrite whose .bin PUT succeeds
// but whose sidecar can be neither written nor removed (the store refuses
// requests on .meta.json keys) fails, as promised; but the failed Put has
// already replaced the .bin, so until some later retry succeeds a node
// reads the NEW bytes through the OLD sidecar ("a node never pairs new
// bytes with an old sidecar", ledger.go). A crash of the process at the
// same point (after the .bin PUT, before the sidecar PUT) leaves the same
// state with no retry pending.
func TestReviewOverwriteSidecarUnwritable(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	proxy, b := proxied(t, srv, bucket, nil)
	id := segment.ID(0x51)
	_, a := ledgerSegment(uint64(id), 1000, 2, 10)
	if _, err := b.Put(ctx, id, bytes.NewReader(a), backend.PutOptions{Size: int64(len(a))}); err != nil {
		t.Fatal(err)
	}
	checkSidecarDescribes(t, b, id)

	proxy.Set(
		faultproxy.Fault{Kind: faultproxy.Error, Method: "PUT", PathContains: ".meta.json", Status: 403, Code: "AccessDenied"},
		faultproxy.Fault{Kind: faultproxy.Error, Method: "DELETE", PathContains: ".meta.json", Status: 403, Code: "AccessDenied"},
	)
	_, c := ledgerSegment(uint64(id), 2000, 5, 30)
	_, err := b.Put(ctx, id, bytes.NewReader(c), backend.PutOptions{Size: int64(len(c))})
	t.Logf("overwrite with the sidecar unwritable: %v", err)
	if err == nil {
		t.Fatal("Put succeeded although the sidecar could be neither written nor removed")
	}
	proxy.Clear()
	// The Put failed: data safety says the segment is as it was, and a node
	// must not see the new bytes through the old sidecar.
	checkSidecarDescribes(t, b, id)
}

// 32 valid values are accepted; no root is nil.
func TestReviewMerkleRootHostileSidecar(t *testing.T) {
	srv := miniotest.Start(t)
	b := newTestBackend(t, srv, nil)
	id := segment.ID(0x53)
	nums := func(n int, v string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = "1"
		}
		if n > 0 {
			parts[n-1] = v
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	cases := []struct {
		name, root string
		ok         bool
	}{
		{"31 numbers", nums(31, "1"), false},
		{"33 numbers", nums(33, "1"), false},
		{"256", nums(32, "256"), false},
		{"-1", nums(32, "-1"), false},
		{"1.5", nums(32, "1.5"), false},
		{"string", nums(32, `"1"`), false},
		{"hex string", `"` + strings.Repeat("ab", 32) + `"`, false},
		{"huge", nums(32, "1e400"), false},
		{"32 valid", nums(32, "255"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"segment_id":83,"created_at":1,"archived_at":1,"original_size":0,"compressed_size":0,"is_compressed":false,"entry_count":0,"merkle_root":` + tc.root + `}`
			if _, err := b.client.PutObject(ctx, &s3api.PutObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.sidecarKey(id)), Body: strings.NewReader(body)}); err != nil {
				t.Fatal(err)
			}
			root, err := b.MerkleRoot(ctx, id)
			if tc.ok {
				if err != nil || len(root) != 32 || root[31] != 255 {
					t.Fatalf("valid root refused: %x %v", root, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("merkle_root %s accepted as %x", tc.root, root)
			}
			if !strings.Contains(err.Error(), b.sidecarKey(id)) || strings.Count(err.Error(), "\n") > 0 {
				t.Fatalf("error does not name the sidecar on one line: %v", err)
			}
		})
	}
	for _, body := range []string{
		`{"segment_id":83,"merkle_root":null}`,
		`{"segment_id":83}`,
	} {
		if _, err := b.client.PutObject(ctx, &s3api.PutObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.sidecarKey(id)), Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
		if root, err := b.MerkleRoot(ctx, id); err != nil || root != nil {
			t.Fatalf("%s: root %x, err %v; want none", body, root, err)
		}
	}
}

// TestReviewSidecarEdgeSegments: a segment of 0 entries gets a sidecar
// without merkle_root (all node-required fields present); one with an
// empty key and an empty value gets the root of that single leaf; a
// segment with a key twice gets no sidecar (a node would drop one).
func TestReviewSidecarEdgeSegments(t *testing.T) {
	srv := miniotest.Start(t)
	b := newTestBackend(t, srv, nil)
	put := func(id segment.ID, s *ledger.Segment) {
		t.Helper()
		enc := ledger.Encode(s)
		if _, err := b.Put(ctx, id, bytes.NewReader(enc), backend.PutOptions{Size: -1}); err != nil {
			t.Fatal(err)
		}
	}
	put(0x60, &ledger.Segment{ID: 0x60, Timestamp: 5})
	sc, ok := mustSidecar(t, b, 0x60)
	if !ok || sc.EntryCount != 0 || sc.MerkleRoot != nil || sc.OriginalSize != 0 {
		t.Fatalf("0 entries: sidecar %+v ok %v", sc, ok)
	}
	put(0x61, &ledger.Segment{ID: 0x61, Timestamp: 6, Entries: []ledger.Entry{{Key: []byte{}, Value: []byte{}}}})
	sc, ok = mustSidecar(t, b, 0x61)
	leaf := ledger.LeafHash(nil, nil)
	if !ok || sc.EntryCount != 1 || sc.MerkleRoot == nil || *sc.MerkleRoot != leaf {
		t.Fatalf("one empty entry: sidecar %+v ok %v, want root %s", sc, ok, leaf)
	}
	// A Scribe Ledger sidecar of an earlier version exists; then bytes
	// with a duplicate key are written: no sidecar must remain.
	put(0x62, &ledger.Segment{ID: 0x62, Timestamp: 7, Entries: []ledger.Entry{{Key: []byte("a"), Value: []byte("1")}}})
	put(0x62, &ledger.Segment{ID: 0x62, Timestamp: 8, Entries: []ledger.Entry{{Key: []byte("k"), Value: []byte("1")}, {Key: []byte("k"), Value: []byte("2")}}})
	if sc, ok := mustSidecar(t, b, 0x62); ok {
		t.Fatalf("duplicate keys: sidecar %+v left beside bytes a node reads differently", sc)
	}
}

// TestReviewDeleteLeavesSidecar: Delete (rm) removes the .bin, then the
// sidecar; when the sidecar's removal fails (the DELETE, or the listing
// dropStale needs first), Delete still succeeds and the sidecar stays: a
// node then finds a sidecar whose .bin is gone (upstream retrieve_segment
// fails instead of reporting no segment), and nothing removes it later.
func TestReviewDeleteLeavesSidecar(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	proxy, b := proxied(t, srv, bucket, nil)
	for i, f := range []faultproxy.Fault{
		{Kind: faultproxy.Error, Method: "DELETE", PathContains: ".meta.json", Status: 503, Code: "SlowDown"},
		{Kind: faultproxy.Error, Method: "GET", Query: "list-type", Status: 503, Code: "SlowDown"},
	} {
		id := segment.ID(0x70 + i)
		_, a := ledgerSegment(uint64(id), 1000, 2, 10)
		if _, err := b.Put(ctx, id, bytes.NewReader(a), backend.PutOptions{Size: int64(len(a))}); err != nil {
			t.Fatal(err)
		}
		proxy.Set(f)
		err := b.Delete(ctx, id, "")
		proxy.Clear()
		_, sidecarLeft := mustSidecar(t, b, id)
		_, statErr := b.Stat(ctx, id)
		t.Logf("%s %s refused: Delete err %v; .bin gone: %v; sidecar left: %v", f.Method, f.PathContains+f.Query, err, errorsIsNotFoundErr(statErr), sidecarLeft)
		if err == nil && sidecarLeft {
			t.Errorf("Delete succeeded with %s refused, leaving %s beside no .bin", f.Method+" "+f.PathContains+f.Query, b.sidecarKey(id))
		}
	}
}

func errorsIsNotFoundErr(err error) bool { return err != nil && errors.Is(err, backend.ErrNotFound) }
