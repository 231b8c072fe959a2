package s3

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/backend/compress"
	"github.com/scribefs/scribefs/backend/mem"
	"github.com/scribefs/scribefs/cache"
	"github.com/scribefs/scribefs/internal/faultproxy"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

// These tests read a bucket as another host would: a fresh tiered store
// (an empty hot tier and index, as after a rebuild or on a read-only
// mount) over a fresh S3 backend, through the fault proxy where bytes are
// to be damaged on the way.

// freshStore is a read-only tiered store over cold with an empty hot tier
// and index, and 1 MiB fetch spans so that multi-block segments are read in
// ranges.
func freshStore(t *testing.T, cold backend.Backend) *tier.Store {
	t.Helper()
	hot := mem.New(segment.TierHot)
	s, err := tier.New(hot, hot.Index(), cold, cache.New(64<<20), tier.Config{
		ReadOnly: true, FetchSpan: segment.BlockSize, ReadAhead: segment.BlockSize, PrefetchSegments: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readAt opens id in s and reads n bytes at off.
func readAt(s *tier.Store, id segment.ID, off, n int64) ([]byte, error) {
	r, err := s.Open(ctx, id)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := make([]byte, n)
	got, err := r.ReadAt(buf, off)
	return buf[:got], err
}

func proxied(t *testing.T, srv *miniotest.Server, bucket string, mutate func(*Config)) (*faultproxy.Proxy, *Backend) {
	t.Helper()
	p, err := faultproxy.New(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	cfg := testConfig(p.URL, bucket)
	if mutate != nil {
		mutate(&cfg)
	}
	return p, mustNew(t, cfg)
}

func bucketKeys(t *testing.T, srv *miniotest.Server, bucket, prefix string) []string {
	t.Helper()
	out, err := srv.Client().ListObjectsV2(ctx, &s3api.ListObjectsV2Input{Bucket: &bucket, Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// TestLargeObjectCheckedOnAnyHost: block sums too many for the object's
// metadata (lowered here from about 280 blocks to one) are kept in a
// companion object, so a fresh store reading ranges checks them: a byte
// flipped on the way (fault proxy, ranged GET) or in the stored object
// fails the read with a checksum error instead of serving it. The
// companion belongs to one version: a Put that fails before its commit
// leaves the old version checkable, an overwrite leaves one companion, and
// Delete removes it.
func TestLargeObjectCheckedOnAnyHost(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	writer := mustNew(t, testConfig(srv.Endpoint, bucket))
	writer.metaBlocksMax = 8 // one block sum fits, two do not
	single, multi := segment.ID(1), segment.ID(2)
	data := map[segment.ID][]byte{
		single: backendtest.RandomBytes(1, 3<<20+5),   // one PutObject
		multi:  backendtest.RandomBytes(2, largeSize), // multipart
	}
	for id, b := range data {
		if _, err := writer.Put(ctx, id, bytes.NewReader(b), backend.PutOptions{Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
	}

	proxy, reader := proxied(t, srv, bucket, func(c *Config) { c.ReadOnly = true })
	for id, b := range data {
		info, err := reader.Stat(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if want := segment.Sum(b); !info.Sums.Equal(want) {
			t.Fatalf("segment %d: fresh Stat has sums with %d blocks, want the %d recorded", id, blocksOf(info.Sums), len(want.Blocks))
		}
	}

	// A byte flipped in every ranged GET of the object's body.
	for id, b := range data {
		proxy.Set(faultproxy.Fault{Kind: faultproxy.Corrupt, Method: "GET", PathContains: writer.key(id), After: 100})
		got, err := readAt(freshStore(t, reader), id, 2<<20, 4096)
		if !errors.Is(err, segment.ErrChecksum) {
			t.Fatalf("segment %d, flipped on the way: read %d bytes (equal to the stored: %v), err %v; want a checksum error",
				id, len(got), bytes.Equal(got, b[2<<20:2<<20+4096]), err)
		}
		proxy.Clear()
		if got, err := readAt(freshStore(t, reader), id, 2<<20, 4096); err != nil || !bytes.Equal(got, b[2<<20:2<<20+4096]) {
			t.Fatalf("segment %d, fault cleared: err %v", id, err)
		}
	}

	// A byte flipped in the stored object (rewritten with its metadata).
	head, err := srv.Client().HeadObject(ctx, &s3api.HeadObjectInput{Bucket: &bucket, Key: aws.String(writer.key(multi))})
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(data[multi])
	bad[5<<20+7] ^= 0x40
	if _, err := srv.Client().PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: aws.String(writer.key(multi)),
		Body: bytes.NewReader(bad), Metadata: head.Metadata}); err != nil {
		t.Fatal(err)
	}
	if got, err := readAt(freshStore(t, reader), multi, 5<<20, 4096); !errors.Is(err, segment.ErrChecksum) {
		t.Fatalf("stored object damaged: read %d bytes, err %v; want a checksum error", len(got), err)
	}
	if _, err := writer.Put(ctx, multi, bytes.NewReader(data[multi]), backend.PutOptions{Size: largeSize}); err != nil {
		t.Fatal(err)
	}

	// A Put that fails at its commit leaves the old version checkable.
	wproxy, pwriter := proxied(t, srv, bucket, nil)
	pwriter.metaBlocksMax = 8
	wproxy.Set(faultproxy.Fault{Kind: faultproxy.Error, Method: "POST", Query: "uploadId", Status: 403, Code: "AccessDenied"})
	other := backendtest.RandomBytes(3, largeSize)
	if _, err := pwriter.Put(ctx, multi, bytes.NewReader(other), backend.PutOptions{Size: largeSize}); err == nil {
		t.Fatal("Put succeeded through a refused commit")
	}
	wproxy.Clear()
	if got, err := readAt(freshStore(t, mustNew(t, testConfig(srv.Endpoint, bucket))), multi, 9<<20, 1<<20); err != nil || !bytes.Equal(got, data[multi][9<<20:10<<20]) {
		t.Fatalf("after a failed Put: err %v", err)
	}
	info, err := mustNew(t, testConfig(srv.Endpoint, bucket)).Stat(ctx, multi)
	if err != nil || !info.Sums.Equal(segment.Sum(data[multi])) {
		t.Fatalf("after a failed Put: sums with %d blocks, err %v", blocksOf(info.Sums), err)
	}

	// An overwrite leaves one companion; Delete leaves none, after the
	// object itself is gone.
	if _, err := pwriter.Put(ctx, multi, bytes.NewReader(other), backend.PutOptions{Size: largeSize}); err != nil {
		t.Fatal(err)
	}
	base := writer.keyPrefix + multi.Hex() + "."
	if keys := bucketKeys(t, srv, bucket, base); len(keys) != 2 || !strings.HasSuffix(keys[0], ".sums") && !strings.HasSuffix(keys[1], ".sums") {
		t.Fatalf("after an overwrite: keys %q, want the object and one companion", keys)
	}
	if got, err := readAt(freshStore(t, reader), multi, 9<<20, 1<<20); err != nil || !bytes.Equal(got, other[9<<20:10<<20]) {
		t.Fatalf("after an overwrite: err %v", err)
	}
	if err := writer.Delete(ctx, multi, ""); err != nil {
		t.Fatal(err)
	}
	if keys := bucketKeys(t, srv, bucket, base); len(keys) != 0 {
		t.Fatalf("after Delete: keys %q left", keys)
	}
	// Listings never show companions.
	var listed []segment.ID
	if err := reader.List(ctx, func(i segment.Info) error { listed = append(listed, i.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(listed) != fmt.Sprint([]segment.ID{single}) {
		t.Fatalf("listed %v, want [%d]", listed, single)
	}
}

func blocksOf(s *segment.Checksums) int {
	if s == nil {
		return -1
	}
	return len(s.Blocks)
}

// TestUpstreamGzipRangesChecked: a Scribe Ledger gzip object larger than
// one fetch span is read in ranges, each decoded from the stream's start
// and cut short of gzip's CRC; a byte flipped inside a stored (level 0)
// deflate block decodes to a wrong byte without a deflate error. The
// store learns block sums by one whole read, which gzip's CRC checks,
// before serving any range: the flipped byte is a checksum error.
func TestUpstreamGzipRangesChecked(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	b := mustNew(t, testConfig(srv.Endpoint, bucket))
	id := segment.ID(7)
	plain := backendtest.RandomBytes(4, 3<<20+100)
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.NoCompression)
	zw.Write(plain)
	zw.Close()
	put := func(body []byte) {
		t.Helper()
		if _, err := srv.Client().PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: aws.String(b.key(id)), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	sidecar := fmt.Sprintf(`{"segment_id":%d,"created_at":%d,"original_size":%d,"entry_count":0,"is_compressed":true}`,
		id, time.Now().Unix(), len(plain)-32)
	if _, err := srv.Client().PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: aws.String(b.sidecarKey(id)), Body: strings.NewReader(sidecar)}); err != nil {
		t.Fatal(err)
	}
	put(z.Bytes())
	if got, err := readAt(freshStore(t, b), id, 2<<20, 4096); err != nil || !bytes.Equal(got, plain[2<<20:2<<20+4096]) {
		t.Fatalf("intact gzip object: err %v", err)
	}
	bad := bytes.Clone(z.Bytes())
	i := bytes.Index(bad, plain[100:164]) // inside the first stored block
	if i < 0 {
		t.Fatal("stored block not found")
	}
	bad[i] ^= 0x01
	put(bad)
	got, err := readAt(freshStore(t, b), id, 0, 4096)
	if !errors.Is(err, segment.ErrChecksum) {
		t.Fatalf("flipped byte: read %d bytes (equal to the stored: %v), err %v; want a checksum error",
			len(got), bytes.Equal(got, plain[:4096]), err)
	}
}

// TestNonCompressingHostReadsZstd: a store configured without compression
// reads a bucket a compressing store wrote: the segment has its true size
// and its bytes, in whole and in ranges.
func TestNonCompressingHostReadsZstd(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	w, err := compress.New(mustNew(t, testConfig(srv.Endpoint, bucket)), compress.Config{Mode: compress.Zstd})
	if err != nil {
		t.Fatal(err)
	}
	id := segment.ID(9)
	plain := bytes.Repeat([]byte("scribe ledger entry, compressible. "), (3<<20)/35)
	if _, err := w.Put(ctx, id, bytes.NewReader(plain), backend.PutOptions{Size: int64(len(plain))}); err != nil {
		t.Fatal(err)
	}
	r, err := compress.New(mustNew(t, testConfig(srv.Endpoint, bucket)), compress.Config{Mode: compress.None})
	if err != nil {
		t.Fatal(err)
	}
	s := freshStore(t, r)
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := s.Stat(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(plain)) {
		t.Fatalf("size %d, want %d (stored size %d)", info.Size, len(plain), info.StoredSize)
	}
	var listed int64 = -1
	s.List(ctx, func(i segment.Info) error { listed = i.Size; return nil })
	if listed != int64(len(plain)) {
		t.Fatalf("listed size %d, want %d", listed, len(plain))
	}
	for _, off := range []int64{0, 2<<20 + 5, int64(len(plain)) - 10} {
		got, err := readAt(s, id, off, 4096)
		if err != nil && err != io.EOF {
			t.Fatalf("read at %d: %v", off, err)
		}
		if !bytes.Equal(got, plain[off:min(off+4096, int64(len(plain)))]) {
			t.Fatalf("read at %d: wrong bytes", off)
		}
	}
}

// TestForeignObjectUnchecked: an object another program wrote with no
// checksum anywhere is described as such (Sums nil, no self-checking
// encoding: scribefs stat's "checked: no") and every cold fetch of it is
// counted in Stats.UncheckedReads (scribefs_unchecked_cold_fetches_total);
// fetches of an object scribefs wrote are not.
func TestForeignObjectUnchecked(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	b := mustNew(t, testConfig(srv.Endpoint, bucket))
	foreign, ours := segment.ID(11), segment.ID(12)
	data := backendtest.RandomBytes(11, 3<<20+9)
	if _, err := srv.Client().PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: aws.String(b.key(foreign)), Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, ours, bytes.NewReader(data), backend.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	cold, err := compress.New(b, compress.Config{}) // as cmd/scribefs assembles it
	if err != nil {
		t.Fatal(err)
	}
	s := freshStore(t, cold)
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	fi, err := s.Stat(ctx, foreign)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Sums != nil || fi.Compression != "" {
		t.Fatalf("foreign object: sums %v, compression %q; want none (checked: no)", fi.Sums, fi.Compression)
	}
	oi, err := s.Stat(ctx, ours)
	if err != nil || oi.Sums == nil {
		t.Fatalf("our object: sums %v, err %v; want its sums (checked: yes)", oi.Sums, err)
	}
	if got, err := readAt(s, ours, 1<<20, 3<<20); err != nil && err != io.EOF || !bytes.Equal(got, data[1<<20:]) {
		t.Fatalf("our object: err %v", err)
	}
	if n := s.Stats(ctx).UncheckedReads; n != 0 {
		t.Fatalf("%d unchecked fetches after reading our object, want 0", n)
	}
	if got, err := readAt(s, foreign, 1<<20, 2<<20); err != nil || !bytes.Equal(got, data[1<<20:3<<20]) {
		t.Fatalf("foreign object: err %v", err)
	}
	// A version without block sums that one fetch covers is fetched whole
	// (so that a whole-object check can run when there is one): one
	// unchecked fetch for the 3 MiB foreign object, however it is read.
	if n := s.Stats(ctx).UncheckedReads; n < 1 {
		t.Fatalf("%d unchecked fetches after reading 2 MiB of the foreign object, want at least 1", n)
	}
}

// TestLostCompanionFallsBackToWholeRead: an object whose companion is gone
// (deleted by hand, or lost to a crash) still records its whole CRC32C, so
// a fresh store reads it whole once, checked, to learn its block sums
// before serving a range: with a byte flipped in that whole read the open
// fails with a checksum error; with the fault gone the range is served and
// checked, and a byte flipped in a later ranged GET is caught too.
func TestLostCompanionFallsBackToWholeRead(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	writer := mustNew(t, testConfig(srv.Endpoint, bucket))
	writer.metaBlocksMax = 8
	id := segment.ID(21)
	data := backendtest.RandomBytes(21, 3<<20+21)
	if _, err := writer.Put(ctx, id, bytes.NewReader(data), backend.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	keys := bucketKeys(t, srv, bucket, writer.keyPrefix+id.Hex()+".")
	var companion string
	for _, k := range keys {
		if strings.HasSuffix(k, ".sums") {
			companion = k
		}
	}
	if companion == "" {
		t.Fatalf("no companion among %q", keys)
	}
	if _, err := srv.Client().DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &bucket, Key: &companion}); err != nil {
		t.Fatal(err)
	}
	proxy, reader := proxied(t, srv, bucket, func(c *Config) { c.ReadOnly = true })
	info, err := reader.Stat(ctx, id)
	if err != nil || info.Sums == nil || len(info.Sums.Blocks) != 0 {
		t.Fatalf("companion gone: Stat sums %v (blocks %d), err %v; want the whole sum only", info.Sums, blocksOf(info.Sums), err)
	}

	proxy.Set(faultproxy.Fault{Kind: faultproxy.Corrupt, Method: "GET", PathContains: writer.key(id), After: 3 << 20})
	if got, err := readAt(freshStore(t, reader), id, 0, 4096); !errors.Is(err, segment.ErrChecksum) {
		t.Fatalf("flipped byte in the learning read: read %d bytes (equal to the stored: %v), err %v; want a checksum error",
			len(got), bytes.Equal(got, data[:4096]), err)
	}
	proxy.Clear()
	s := freshStore(t, reader)
	if got, err := readAt(s, id, 2<<20, 4096); err != nil || !bytes.Equal(got, data[2<<20:2<<20+4096]) {
		t.Fatalf("fault cleared: err %v", err)
	}
	proxy.Set(faultproxy.Fault{Kind: faultproxy.Corrupt, Method: "GET", PathContains: writer.key(id), After: 100})
	if got, err := readAt(s, id, 1<<20, 4096); !errors.Is(err, segment.ErrChecksum) {
		t.Fatalf("flipped byte in a ranged GET after learning: read %d bytes (equal to the stored: %v), err %v; want a checksum error",
			len(got), bytes.Equal(got, data[1<<20:1<<20+4096]), err)
	}
}

// patternReader yields n deterministic bytes (not seekable), without
// holding them.
type patternReader struct{ off, n int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), p.n-p.off)]
	for i := range b {
		x := uint64(p.off + int64(i))
		b[i] = byte(x*0x9E3779B97F4A7C15>>56) ^ byte(x>>20)
	}
	p.off += int64(len(b))
	return len(b), nil
}

// TestCompanionAtRealSize: at the real metadata limit, a segment of 300
// blocks (more than the about 280 whose sums fit) written from an
// unseekable source is checkable by a fresh host: its Stat has all 300
// block sums, and a byte flipped in a ranged GET of its last blocks is a
// checksum error.
func TestCompanionAtRealSize(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	writer := mustNew(t, testConfig(srv.Endpoint, bucket))
	const size = 300*segment.BlockSize - 77
	id := segment.ID(300)
	if _, err := writer.Put(ctx, id, &patternReader{n: size}, backend.PutOptions{Size: size}); err != nil {
		t.Fatal(err)
	}
	var want segment.Summer
	io.Copy(&want, &patternReader{n: size})
	proxy, reader := proxied(t, srv, bucket, func(c *Config) { c.ReadOnly = true })
	info, err := reader.Stat(ctx, id)
	if err != nil || !info.Sums.Equal(want.Sums()) {
		t.Fatalf("fresh Stat: %d block sums, err %v; want all %d", blocksOf(info.Sums), err, len(want.Sums().Blocks))
	}
	proxy.Set(faultproxy.Fault{Kind: faultproxy.Corrupt, Method: "GET", PathContains: writer.key(id), After: 100})
	got, err := readAt(freshStore(t, reader), id, 298*segment.BlockSize, 4096)
	if !errors.Is(err, segment.ErrChecksum) {
		var exp [4096]byte
		(&patternReader{off: 298 * segment.BlockSize, n: size}).Read(exp[:])
		t.Fatalf("flipped byte in block 298: read %d bytes (equal to the stored: %v), err %v; want a checksum error", len(got), bytes.Equal(got, exp[:]), err)
	}
}

// TestResolveCostPlainBucket: what marking every listed object unresolved
// costs a host that does not compress, on a bucket of plain segments: one
// HEAD and at most one footer probe per object version, once (the index
// keeps the result, so a second reconcile asks nothing more), and the sums
// a read then needs come with it.
func TestResolveCostPlainBucket(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	w := mustNew(t, testConfig(srv.Endpoint, bucket))
	const n = 50
	for i := segment.ID(1); i <= n; i++ {
		data := backendtest.RandomBytes(int64(i), 64<<10)
		if _, err := w.Put(ctx, i, bytes.NewReader(data), backend.PutOptions{Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
	}
	proxy, r := proxied(t, srv, bucket, nil)
	cold, err := compress.New(r, compress.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s := freshStore(t, cold)
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	st := proxy.Stats()
	heads, gets := st.ByMethod["HEAD"], st.ByMethod["GET"]-1 // one listing page
	t.Logf("MEASURED first reconcile of %d plain objects: %d HEAD, %d GET besides the listing", n, heads, gets)
	if heads != n || gets > n {
		t.Fatalf("first reconcile: %d HEADs and %d GETs for %d objects, want %d and at most %d", heads, gets, n, n, n)
	}
	proxy.ResetStats()
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if st := proxy.Stats(); st.Requests != 1 {
		t.Fatalf("second reconcile: %d requests (%v), want the listing only", st.Requests, st.ByMethod)
	}
	info, err := s.Stat(ctx, 7)
	if err != nil || info.Sums == nil {
		t.Fatalf("resolved entry: sums %v, err %v", info.Sums, err)
	}
}
