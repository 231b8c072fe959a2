package s3

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
)

// TestHostileSidecarSizes: a Scribe Ledger sidecar whose sizes overflow, or
// imply more than deflate can make of the object, makes the segment
// unreadable (a checksum-kind error naming the sidecar's key), never a
// negative, zero or invented size; a true sidecar still gives the decoded
// length.
func TestHostileSidecarSizes(t *testing.T) {
	srv := miniotest.Start(t)
	b := newTestBackend(t, srv, nil)
	bucket := b.cfg.Bucket
	c := srv.Client()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("segment bytes "), 10)) // 140 bytes
	zw.Close()
	put := func(key string, body []byte) {
		t.Helper()
		if _, err := c.PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, tc := range []struct {
		original, entries uint64
		ok                bool
	}{
		{1<<63 - 1, 1, false},  // wraps negative
		{1<<64 - 32, 0, false}, // wraps to 0
		{0, 1<<64/16 - 1, false},
		{1 << 40, 0, false}, // more than 1032 × the object
		{108, 0, true},      // 108 + 32 = 140: the true length
	} {
		id := segment.ID(10 + i)
		put(b.key(id), gz.Bytes())
		put(b.sidecarKey(id), fmt.Appendf(nil, `{"segment_id": %d, "created_at": 1, "archived_at": 2, "original_size": %d, "compressed_size": %d, "is_compressed": true, "entry_count": %d}`,
			id, tc.original, gz.Len(), tc.entries))
		info, err := b.Stat(ctx, id)
		if tc.ok {
			if err != nil || info.Size != 140 {
				t.Fatalf("true sidecar: %+v, %v", info, err)
			}
			continue
		}
		if err == nil {
			t.Fatalf("original_size %d, entry_count %d: stat gave size %d", tc.original, tc.entries, info.Size)
		}
		if !errors.Is(err, segment.ErrChecksum) || !strings.Contains(err.Error(), b.sidecarKey(id)) {
			t.Fatalf("original_size %d, entry_count %d: %v (want a checksum error naming %s)", tc.original, tc.entries, err, b.sidecarKey(id))
		}
	}
}

// FuzzSidecar feeds arbitrary bytes to the sidecar parser and the size it
// implies: no panic; an accepted compressed sidecar gives a size that is
// positive and within what deflate makes of the object, or an error.
func FuzzSidecar(f *testing.F) {
	f.Add([]byte(`{"segment_id": 7, "created_at": 1, "archived_at": 2, "original_size": 108, "compressed_size": 60, "is_compressed": true, "entry_count": 0}`), int64(60))
	f.Add([]byte(`{"segment_id": 7, "original_size": 9223372036854775807, "is_compressed": true, "entry_count": 1}`), int64(100))
	f.Add([]byte(`{"original_size": 18446744073709551584, "is_compressed": true, "entry_count": 0}`), int64(100))
	f.Add([]byte(`{"is_compressed": false}`), int64(1))
	f.Fuzz(func(t *testing.T, data []byte, stored int64) {
		if stored < 0 || stored > 1<<40 {
			return
		}
		sc, err := parseSidecar(7, bytes.NewReader(data))
		if err != nil || !sc.IsCompressed {
			return
		}
		size, err := sc.decodedSize(stored)
		if err != nil {
			return
		}
		if size < 32 || size > maxInflate*stored+64 {
			t.Fatalf("sidecar %q of a %d-byte object gives size %d", data, stored, size)
		}
	})
}

// FuzzLease feeds arbitrary bytes to the lease object's parser: no panic;
// the TTL a contender would watch is bounded; the refusal naming the holder
// stays one line of bounded length.
func FuzzLease(f *testing.F) {
	f.Add([]byte(`{"holder":"host:/var/lib/scribefs/hot.db","holder_id":"0123456789abcdef0123456789abcdef","pid":42,"expires_unix":1800000000,"renewed_unix":1799999880,"ttl_ms":120000,"nonce":"ab"}`))
	f.Add([]byte(`{"holder":"a\nb\u0000c","ttl_ms":9223372036854775807}`))
	f.Add([]byte(`{"ttl_ms":-5}`))
	f.Add([]byte(`not json`))
	b := &Backend{cfg: Config{Bucket: "b", Prefix: "p/"}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		lb := parseLease(raw)
		if lb == nil {
			t.Fatal("nil lease")
		}
		if ttl := lb.ttl(); ttl < 0 || ttl > maxLeaseTTL {
			t.Fatalf("lease %q: ttl %v", raw, ttl)
		}
		msg := b.heldError(lb, "").Error()
		if strings.ContainsAny(msg, "\n\r") || len(msg) > 600 {
			t.Fatalf("lease %q: refusal %q", raw, msg)
		}
	})
}
