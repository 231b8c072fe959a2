package tier_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/scribefs/scribefs/backend/compress"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/backend/retry"
	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

// Adversarial review of "every cold byte checked": a second host reads,
// through the stack a mount assembles (retry over compress over S3) and
// the fault proxy, segments whose bytes are damaged on the way.

const reviewSpan = 4 * segment.BlockSize

// sumsStore is a store over a fresh bbolt file and MinIO reached at
// endpoint, assembled as a mount does it, with a 4-block fetch span.
func sumsStore(t *testing.T, endpoint, bucket string) *tier.Store {
	t.Helper()
	raw, err := s3.New(rctx, s3.Config{
		Bucket: bucket, Region: miniotest.Region, Endpoint: endpoint,
		AccessKeyID: miniotest.AccessKey, SecretAccessKey: miniotest.SecretKey, PathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	c, err := compress.New(raw, compress.Config{Mode: compress.None})
	if err != nil {
		t.Fatal(err)
	}
	cold := retry.New(c, retry.Policy{MaxRetries: 2, BaseDelay: 10 * time.Millisecond, MaxDelay: 20 * time.Millisecond})
	hot, err := local.Open(filepath.Join(t.TempDir(), "hot.db"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hot.Close() })
	s, err := tier.New(hot, hot.Index(), cold, nil, tier.Config{FetchSpan: reviewSpan, PrefetchSegments: 4})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readOrChecksumError reads [off, off+n) of id from s: it must give the
// original bytes or fail with segment.ErrChecksum (or another error), and
// never give other bytes. It reports whether it failed.
func readOrChecksumError(t *testing.T, s *tier.Store, id segment.ID, want []byte, off, n int64) error {
	t.Helper()
	r, err := s.Open(rctx, id)
	if err != nil {
		return err
	}
	defer r.Close()
	buf := make([]byte, n)
	got, err := r.ReadAt(buf, off)
	if err != nil && err != io.EOF {
		return err
	}
	if !bytes.Equal(buf[:got], want[off:off+int64(got)]) {
		t.Errorf("segment %d [%d, +%d): read %d bytes that differ from what was written, without an error", id, off, n, got)
	}
	return nil
}

// TestReviewDamagedLastByteNeverServed: one byte flipped in the last byte
// of every GET body of a segment. Segments of exactly one fetch span with
// block sums, of one fetch span with only a whole-object sum (metadata
// rewritten), and larger than a fetch span with only a whole-object sum
// (block sums learned by a whole read); also a zero-length one. Every read gives
// the written bytes or an error; after the fault clears, the same store
// reads the right bytes (nothing damaged was cached).
func TestReviewDamagedLastByteNeverServed(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	w := sumsStore(t, srv.Endpoint, bucket)
	segs := map[segment.ID][]byte{
		1: randomBytes(int(reviewSpan), 11),                        // exactly one span, block sums in metadata
		2: randomBytes(int(reviewSpan), 12),                        // exactly one span, whole sum only
		3: {},                                                      // empty
		4: randomBytes(int(reviewSpan+2*segment.BlockSize+17), 14), // over a span, whole sum only
	}
	for id, data := range segs {
		if _, err := w.Put(rctx, id, bytes.NewReader(data), int64(len(data)), time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := w.Archive(rctx, id); err != nil {
			t.Fatalf("archive %d: %v", id, err)
		}
	}
	c := srv.Client()
	key := func(id segment.ID) string { return "segments/segment-" + id.Hex() + ".bin" }
	// Segments 2 and 4: keep only the whole-object CRC32C in their
	// metadata (as a companion lost, or another writer, leaves them).
	for _, id := range []segment.ID{2, 4} {
		h, err := c.HeadObject(rctx, &s3api.HeadObjectInput{Bucket: &bucket, Key: aws.String(key(id))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.CopyObject(rctx, &s3api.CopyObjectInput{
			Bucket: &bucket, Key: aws.String(key(id)), CopySource: aws.String(bucket + "/" + key(id)),
			MetadataDirective: types.MetadataDirectiveReplace,
			Metadata:          map[string]string{"scribefs-crc32c": h.Metadata["scribefs-crc32c"]},
		}); err != nil {
			t.Fatal(err)
		}
	}

	// The fault proxy's Corrupt flips the byte at a fixed body offset (not
	// clamped to the body, whatever its doc says), and the reader's GETs
	// are ranged or whole as it decides: this proxy flips the last byte of
	// every GET body of the segment named by flip.
	p := newReqLog(t, srv.Endpoint)
	var flip atomic.Value
	flip.Store("")
	var flipped atomic.Int64
	p.onResponse = func(r *http.Response) {
		k := flip.Load().(string)
		if k != "" && r.Request.Method == http.MethodGet && strings.HasSuffix(r.Request.URL.Path, k) &&
			r.StatusCode/100 == 2 && r.ContentLength > 0 {
			r.Body = &lastByteFlipper{rc: r.Body, left: r.ContentLength, n: &flipped}
		}
	}
	r := sumsStore(t, p.URL, bucket)
	if err := r.Reconcile(rctx); err != nil {
		t.Fatal(err)
	}
	for id, data := range segs {
		size := int64(len(data))
		// Flip the last byte of every GET body of this segment (ranged or
		// whole: the offset is clamped to the body).
		flip.Store(key(id))
		var errs []error
		if size > 0 {
			lastBlk := (size - 1) / segment.BlockSize * segment.BlockSize
			for _, rg := range [][2]int64{{lastBlk, size - lastBlk}, {0, segment.BlockSize}, {0, size}} {
				errs = append(errs, readOrChecksumError(t, r, id, data, rg[0], min(rg[1], size-rg[0])))
			}
		} else {
			errs = append(errs, readOrChecksumError(t, r, id, data, 0, 1))
		}
		t.Logf("segment %d (%d bytes), last byte of every GET flipped: %v", id, size, errs)
		if size > 0 && errs[0] == nil {
			t.Errorf("segment %d: reading its last block with its last byte damaged succeeded", id)
		}
		for _, e := range errs {
			if e != nil && !errors.Is(e, segment.ErrChecksum) {
				t.Logf("segment %d: note: failed with a non-checksum error: %v", id, e)
			}
		}
		flip.Store("")
		if err := readOrChecksumError(t, r, id, data, 0, max(size, 1)); err != nil {
			t.Errorf("segment %d: after the fault cleared: %v", id, err)
		}
	}
	st := r.Stats(rctx)
	t.Logf("reader stats: checksum errors %d, unchecked reads %d, cold fetches %d; %d GET bodies damaged", st.ChecksumErrors, st.UncheckedReads, st.ColdFetches, flipped.Load())
	if flipped.Load() == 0 {
		t.Fatal("no GET body was damaged")
	}
}

// lastByteFlipper passes a body through with its last byte flipped.
type lastByteFlipper struct {
	rc   io.ReadCloser
	left int64
	n    *atomic.Int64
}

func (f *lastByteFlipper) Read(p []byte) (int, error) {
	n, err := f.rc.Read(p)
	if n > 0 && int64(n) >= f.left && f.left > 0 {
		p[f.left-1] ^= 0x5a
		f.n.Add(1)
	}
	f.left -= int64(n)
	return n, err
}

func (f *lastByteFlipper) Close() error { return f.rc.Close() }

// cutBody passes the first n bytes of a body, then fails as a connection
// reset would.
type cutBody struct {
	rc io.ReadCloser
	n  int64
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.rc.Read(p)
	c.n -= int64(n)
	return n, err
}

func (c *cutBody) Close() error { return c.rc.Close() }

// TestReviewResumeAcrossNewVersionNotSpliced: a second host reads a cold
// segment; the first GET of its bytes is cut after 1 MiB, and before the
// read is resumed another writer replaces the object with other bytes of
// the same size. The read must fail (or give the old bytes whole), never
// splice the old version's first MiB to the new version's rest.
func TestReviewResumeAcrossNewVersionNotSpliced(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	w := sumsStore(t, srv.Endpoint, bucket)
	const id = segment.ID(21)
	for _, size := range []int64{3 << 20, reviewSpan + 3<<20} { // one fetch span, and ranged reads with block sums
		old, repl := randomBytes(int(size), 31), randomBytes(int(size), 32)
		if _, err := w.Put(rctx, id, bytes.NewReader(old), size, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := w.Archive(rctx, id); err != nil {
			t.Fatal(err)
		}
		p := newReqLog(t, srv.Endpoint)
		var gets atomic.Int32
		p.onResponse = func(r *http.Response) {
			if r.Request.Method == http.MethodGet && strings.HasSuffix(r.Request.URL.Path, ".bin") && r.StatusCode/100 == 2 && gets.Add(1) == 1 {
				r.Body = &cutBody{rc: r.Body, n: 1 << 20}
			}
		}
		p.onRequest = func(r *http.Request, _ int) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, ".bin") && gets.Load() == 1 {
				gets.Add(1)
				// Another writer replaces the object before the resume.
				if _, err := srv.Client().PutObject(rctx, &s3api.PutObjectInput{
					Bucket: &bucket, Key: aws.String("segments/segment-" + id.Hex() + ".bin"), Body: bytes.NewReader(repl),
				}); err != nil {
					t.Error(err)
				}
			}
		}
		r := sumsStore(t, p.URL, bucket)
		if err := r.Reconcile(rctx); err != nil {
			t.Fatal(err)
		}
		rd, err := r.Open(rctx, id)
		if err != nil {
			t.Logf("size %d: open: %v", size, err)
			continue
		}
		buf := make([]byte, size)
		n, err := rd.ReadAt(buf, 0)
		rd.Close()
		t.Logf("size %d: read %d bytes across the replacement: %v (%d GETs)", size, n, err, gets.Load())
		if gets.Load() < 2 {
			t.Errorf("size %d: the replacement did not happen between the cut GET and its resumption", size)
		}
		if n > 0 && !bytes.Equal(buf[:n], old[:n]) {
			t.Errorf("size %d: the read returned bytes that are not the version opened (spliced: old prefix equal %v)", size, bytes.Equal(buf[:1<<20], old[:1<<20]))
		}
	}
}
