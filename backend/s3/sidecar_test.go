package s3

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/segment/ledger"
)

// ledgerSegment encodes a segment of n entries whose values are size bytes.
func ledgerSegment(id, ts uint64, n, size int) (*ledger.Segment, []byte) {
	s := &ledger.Segment{ID: id, Timestamp: ts}
	for i := range n {
		v := bytes.Repeat([]byte{byte(i)}, size)
		s.Entries = append(s.Entries, ledger.Entry{Key: fmt.Appendf(nil, "key-%05d", n-i), Value: v})
	}
	return s, ledger.Encode(s)
}

// mustSidecar reads id's sidecar as a node would: every field required.
func mustSidecar(t *testing.T, b *Backend, id segment.ID) (ledger.Sidecar, bool) {
	t.Helper()
	out, err := b.client.GetObject(ctx, &s3api.GetObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.sidecarKey(id))})
	if err != nil {
		if errorsIsNotFound(b, err) {
			return ledger.Sidecar{}, false
		}
		t.Fatal(err)
	}
	defer out.Body.Close()
	raw, _ := io.ReadAll(out.Body)
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatalf("sidecar %s: %v", raw, err)
	}
	for _, k := range []string{"segment_id", "created_at", "archived_at", "original_size", "compressed_size", "is_compressed", "entry_count"} {
		if _, ok := all[k]; !ok {
			t.Fatalf("sidecar lacks %s: %s", k, raw)
		}
	}
	var sc ledger.Sidecar
	if err := json.Unmarshal(raw, &sc); err != nil {
		t.Fatal(err)
	}
	return sc, true
}

func errorsIsNotFound(b *Backend, err error) bool { return b.classify(err).kind == kindNotFound }

// TestPutWritesSidecar: a Put of Scribe Ledger bytes leaves a sidecar that
// describes them, whatever the path (one PutObject, multipart from a
// seekable or an unseekable source); other bytes leave none; Delete removes
// both.
func TestPutWritesSidecar(t *testing.T) {
	srv := miniotest.Start(t)
	b := newTestBackend(t, srv, nil)
	cases := []struct {
		name      string
		n, size   int
		seekable  bool
		multipart bool
	}{
		{"small seekable", 5, 100, true, false},
		{"small stream", 3, 1000, false, false},
		{"large seekable (multipart, checksum pass)", 3, 7 << 20, true, true},
		{"large stream (multipart)", 3, 7 << 20, false, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := segment.ID(100 + i)
			seg, enc := ledgerSegment(uint64(id), 1700000000+uint64(i), tc.n, tc.size)
			var src io.Reader = bytes.NewReader(enc)
			if !tc.seekable {
				src = struct{ io.Reader }{src}
			}
			before := time.Now().Unix()
			info, err := b.Put(ctx, id, src, backend.PutOptions{Size: -1})
			if err != nil {
				t.Fatal(err)
			}
			sc, ok := mustSidecar(t, b, id)
			if !ok {
				t.Fatal("no sidecar after Put of a Scribe Ledger segment")
			}
			root, _ := ledger.MerkleRoot(seg.Entries)
			want := ledger.Sidecar{SegmentID: uint64(id), CreatedAt: seg.Timestamp, ArchivedAt: sc.ArchivedAt,
				OriginalSize: uint64(tc.n * (tc.size + 9)), CompressedSize: uint64(len(enc)), IsCompressed: false,
				EntryCount: uint64(tc.n), MerkleRoot: &root}
			gotRoot := sc.MerkleRoot
			sc.MerkleRoot, want.MerkleRoot = nil, nil
			if gotRoot == nil || *gotRoot != root || sc != want {
				t.Fatalf("sidecar %+v, want %+v", sc, want)
			}
			if int64(sc.ArchivedAt) < before || int64(sc.ArchivedAt) > time.Now().Unix() {
				t.Fatalf("archived_at %d is not now", sc.ArchivedAt)
			}
			if info.Size != int64(len(enc)) {
				t.Fatalf("info.Size %d", info.Size)
			}
			// Overwrite with bytes that are no segment: the sidecar goes.
			if _, err := b.Put(ctx, id, bytes.NewReader([]byte("not a segment")), backend.PutOptions{Size: -1}); err != nil {
				t.Fatal(err)
			}
			if _, ok := mustSidecar(t, b, id); ok {
				t.Fatal("sidecar left beside bytes that are no segment")
			}
		})
	}
	t.Run("overwrite rewrites", func(t *testing.T) {
		id := segment.ID(7)
		_, a := ledgerSegment(7, 1, 2, 10)
		seg, c := ledgerSegment(7, 2, 4, 20)
		for _, body := range [][]byte{a, c} {
			if _, err := b.Put(ctx, id, bytes.NewReader(body), backend.PutOptions{Size: int64(len(body))}); err != nil {
				t.Fatal(err)
			}
		}
		sc, ok := mustSidecar(t, b, id)
		root, _ := ledger.MerkleRoot(seg.Entries)
		if !ok || sc.CreatedAt != 2 || sc.EntryCount != 4 || *sc.MerkleRoot != root || sc.CompressedSize != uint64(len(c)) {
			t.Fatalf("sidecar after overwrite: %+v", sc)
		}
		if err := b.Delete(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
		if _, ok := mustSidecar(t, b, id); ok {
			t.Fatal("Delete left the sidecar")
		}
	})
	t.Run("zstd gets none", func(t *testing.T) {
		_, enc := ledgerSegment(8, 1, 2, 10)
		if _, err := b.Put(ctx, 8, bytes.NewReader(enc), backend.PutOptions{Size: -1}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Put(ctx, 8, bytes.NewReader(enc), backend.PutOptions{Size: -1, Compression: "zstd-blocks"}); err != nil {
			t.Fatal(err)
		}
		if _, ok := mustSidecar(t, b, 8); ok {
			t.Fatal("sidecar beside an encoding no node reads")
		}
	})
}
