package compress

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
)

var ctx = context.Background()

func mustLocal(t *testing.T) *local.Backend {
	t.Helper()
	l, err := local.Open(filepath.Join(t.TempDir(), "hot.db"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mustNew(t *testing.T, inner backend.Backend, mode Mode) *Backend {
	t.Helper()
	b, err := New(inner, Config{Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	for _, mode := range []Mode{Zstd, Gzip, None} {
		t.Run(mode.String(), func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backend.Backend {
				return mustNew(t, mustLocal(t), mode)
			}, backendtest.Options{LargeSize: 20<<20 + 5})
		})
	}
}

func TestConformanceS3(t *testing.T) {
	srv := miniotest.Start(t)
	for _, mode := range []Mode{Zstd, Gzip} {
		t.Run(mode.String(), func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backend.Backend {
				inner, err := s3.New(ctx, s3.Config{
					Bucket: srv.NewBucket(t), Region: miniotest.Region, Endpoint: srv.Endpoint,
					AccessKeyID: miniotest.AccessKey, SecretAccessKey: miniotest.SecretKey, PathStyle: true,
				})
				if err != nil {
					t.Fatal(err)
				}
				return mustNew(t, inner, mode)
			}, backendtest.Options{LargeSize: 20<<20 + 12345})
		})
	}
}

// compressible returns n bytes of log-like text: words from a small
// vocabulary, with random numbers, so it compresses but not to nothing.
func compressible(seed int64, n int) []byte {
	rng := rand.New(rand.NewSource(seed))
	words := []string{"scribefs", "segment", "append", "ledger", "entry", "commit", "offset", "tier", "cold", "hot"}
	var buf bytes.Buffer
	for buf.Len() < n {
		fmt.Fprintf(&buf, "%08d %s %s=%d\n", rng.Intn(1e8), words[rng.Intn(len(words))], words[rng.Intn(len(words))], rng.Intn(1e6))
	}
	return buf.Bytes()[:n]
}

// counting counts the bytes read through Get from the backend it wraps.
type counting struct {
	backend.Backend
	gets  atomic.Int64
	bytes atomic.Int64
}

func (c *counting) Get(ctx context.Context, id segment.ID, opts backend.GetOptions) (io.ReadCloser, error) {
	r, err := c.Backend.Get(ctx, id, opts)
	if err != nil {
		return nil, err
	}
	c.gets.Add(1)
	return countingReader{r, &c.bytes}, nil
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

func mustRead(t *testing.T, b backend.Backend, id segment.ID, opts backend.GetOptions) []byte {
	t.Helper()
	r, err := b.Get(ctx, id, opts)
	if err != nil {
		t.Fatalf("get %d %+v: %v", id, opts, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %d %+v: %v", id, opts, err)
	}
	return got
}

func TestRangedReadFetchesOnlyItsFrames(t *testing.T) {
	for _, mode := range []Mode{Zstd, Gzip} {
		t.Run(mode.String(), func(t *testing.T) {
			inner := &counting{Backend: mustLocal(t)}
			b := mustNew(t, inner, mode)
			defer b.Close()
			data := compressible(1, 20<<20)
			put := backendtest.MustPut(t, b, 1, data)
			if put.Size != int64(len(data)) || put.StoredSize >= put.Size/2 || put.Compression != mode.String()+"-blocks" {
				t.Fatalf("put info: size %d stored %d compression %q", put.Size, put.StoredSize, put.Compression)
			}
			t.Logf("%s: %d bytes stored as %d (ratio %.2f)", mode, put.Size, put.StoredSize, float64(put.Size)/float64(put.StoredSize))

			// A fresh wrapper (another host): Stat reads the footer.
			b2 := mustNew(t, inner, mode)
			inner.bytes.Store(0)
			info, err := b2.Stat(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if info.Size != put.Size || info.StoredSize != put.StoredSize || info.Compression != put.Compression || !info.Sums.Equal(segment.Sum(data)) {
				t.Fatalf("stat %+v, put %+v", info, put)
			}
			t.Logf("%s: stat read %d bytes of the object", mode, inner.bytes.Load())
			if n := inner.bytes.Load(); n > tailProbe {
				t.Fatalf("stat read %d bytes", n)
			}

			off := int64(10<<20 + 12345)
			inner.bytes.Store(0)
			inner.gets.Store(0)
			got := mustRead(t, b2, 1, backend.GetOptions{Offset: off, Length: 4096, Version: info.Version, Compression: info.Compression})
			if !bytes.Equal(got, data[off:off+4096]) {
				t.Fatal("4 KiB range differs")
			}
			frame := put.StoredSize / 20
			t.Logf("%s: 4 KiB ranged read fetched %d bytes in %d GETs (average frame %d bytes)", mode, inner.bytes.Load(), inner.gets.Load(), frame)
			if n := inner.bytes.Load(); n > 2*frame || inner.gets.Load() != 1 {
				t.Fatalf("4 KiB range fetched %d bytes in %d GETs; a frame is about %d", n, inner.gets.Load(), frame)
			}
			// Across a block boundary: two frames.
			off = 3*segment.BlockSize - 100
			got = mustRead(t, b2, 1, backend.GetOptions{Offset: off, Length: 4096, Version: info.Version, Compression: info.Compression})
			if !bytes.Equal(got, data[off:off+4096]) {
				t.Fatal("range across blocks differs")
			}
		})
	}
}

// rewrite replaces the stored object of id with f applied to its bytes.
func rewrite(t *testing.T, inner backend.Backend, id segment.ID, f func([]byte)) {
	t.Helper()
	raw := mustRead(t, inner, id, backend.Whole)
	f(raw)
	if _, err := inner.Put(ctx, id, bytes.NewReader(raw), backend.PutOptions{Size: int64(len(raw))}); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptFrameIsChecksumError(t *testing.T) {
	for _, mode := range []Mode{Zstd, Gzip} {
		t.Run(mode.String(), func(t *testing.T) {
			inner := mustLocal(t)
			b := mustNew(t, inner, mode)
			defer b.Close()
			data := compressible(2, 3*segment.BlockSize)
			put := backendtest.MustPut(t, b, 1, data)
			l, _ := b.layouts.Get(versionKey{1, put.Version})
			rewrite(t, inner, 1, func(raw []byte) { raw[l.offs[1]+(l.offs[2]-l.offs[1])/2] ^= 0x55 })
			info, err := b.Stat(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			// Blocks 0 and 2 still read; block 1 never reaches the reader.
			if got := mustRead(t, b, 1, backend.GetOptions{Length: 100, Version: info.Version, Compression: info.Compression}); !bytes.Equal(got, data[:100]) {
				t.Fatal("block 0 differs")
			}
			r, err := b.Get(ctx, 1, backend.GetOptions{Offset: segment.BlockSize + 10, Length: 10, Version: info.Version, Compression: info.Compression})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got, err := io.ReadAll(r); !errors.Is(err, segment.ErrChecksum) || len(got) != 0 {
				t.Fatalf("read of a corrupt frame: %d bytes, err %v, want ErrChecksum", len(got), err)
			}
		})
	}
}

func TestCorruptIndexIsAnError(t *testing.T) {
	inner := mustLocal(t)
	b := mustNew(t, inner, Zstd)
	defer b.Close()
	backendtest.MustPut(t, b, 1, compressible(3, 2*segment.BlockSize))
	rewrite(t, inner, 1, func(raw []byte) { raw[len(raw)-footerLen-3] ^= 1 }) // in the index
	if _, err := b.Stat(ctx, 1); !errors.Is(err, errFormat) {
		t.Fatalf("stat with a corrupt index: %v", err)
	}
}

func TestPlainObjectsPassThrough(t *testing.T) {
	inner := mustLocal(t)
	b := mustNew(t, inner, Zstd)
	defer b.Close()
	for i, n := range []int{0, 10, 59, 60, 5000, 2*segment.BlockSize + 7} {
		id := segment.ID(i + 1)
		data := backendtest.RandomBytes(int64(i), int64(n))
		backendtest.MustPut(t, inner, id, data) // written before compression was on
		info, err := b.Stat(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != int64(n) || info.Compression != "" || info.StoredSize != 0 || !info.Sums.Equal(segment.Sum(data)) {
			t.Fatalf("stat of plain %d bytes: %+v", n, info)
		}
		if got := mustRead(t, b, id, backend.GetOptions{Length: -1, Version: info.Version}); !bytes.Equal(got, data) {
			t.Fatalf("plain %d bytes read back differently", n)
		}
		if n > 100 {
			if got := mustRead(t, b, id, backend.GetOptions{Offset: 50, Length: 20}); !bytes.Equal(got, data[50:70]) {
				t.Fatalf("plain %d bytes: range read back differently", n)
			}
		}
	}
}

func TestModeNoneReadsCompressed(t *testing.T) {
	inner := mustLocal(t)
	zb := mustNew(t, inner, Zstd)
	data := compressible(4, segment.BlockSize+3)
	backendtest.MustPut(t, zb, 1, data)
	plain := mustNew(t, inner, None)
	defer plain.Close()
	info, err := plain.Stat(ctx, 1)
	if err != nil || info.Compression != CompressionZstd || info.Size != int64(len(data)) {
		t.Fatalf("stat through a None wrapper: %+v %v", info, err)
	}
	if got := mustRead(t, plain, 1, backend.Whole); !bytes.Equal(got, data) {
		t.Fatal("None wrapper read compressed object back differently")
	}
	var listed []segment.Info
	plain.List(ctx, func(i segment.Info) error { listed = append(listed, i); return nil })
	if len(listed) != 1 || listed[0].Unresolved || listed[0].Size != int64(len(data)) {
		t.Fatalf("list after stat (cached): %+v", listed)
	}
	// A fresh wrapper marks listings unresolved whatever its Mode: the
	// listed size of an object a compressing host wrote is its stored one.
	fresh := mustNew(t, inner, None)
	listed = nil
	fresh.List(ctx, func(i segment.Info) error { listed = append(listed, i); return nil })
	if len(listed) != 1 || !listed[0].Unresolved {
		t.Fatalf("list by a fresh None wrapper: %+v, want an unresolved entry", listed)
	}
	zfresh := mustNew(t, inner, Zstd)
	listed = nil
	zfresh.List(ctx, func(i segment.Info) error { listed = append(listed, i); return nil })
	if len(listed) != 1 || !listed[0].Unresolved {
		t.Fatalf("list by a fresh Zstd wrapper: %+v, want an unresolved entry", listed)
	}
}

func TestGzipObjectIsOneGzipStream(t *testing.T) {
	inner := mustLocal(t)
	b := mustNew(t, inner, Gzip)
	defer b.Close()
	for i, n := range []int{0, 1000, 3*segment.BlockSize + 17} {
		data := compressible(int64(i), n)
		backendtest.MustPut(t, b, 1, data)
		raw := mustRead(t, inner, 1, backend.Whole)
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("stdlib gunzip of a %d-byte segment: %d bytes, err %v", n, len(got), err)
		}
		if path, err := exec.LookPath("gunzip"); err == nil {
			cmd := exec.Command(path, "-c")
			cmd.Stdin = bytes.NewReader(raw)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			got, err := cmd.Output()
			if err != nil || stderr.Len() > 0 || !bytes.Equal(got, data) {
				t.Fatalf("gunzip of a %d-byte segment: %d bytes, err %v, stderr %q", n, len(got), err, stderr.String())
			}
		}
	}
}

func TestZstdObjectIsOneZstdStream(t *testing.T) {
	inner := mustLocal(t)
	b := mustNew(t, inner, Zstd)
	defer b.Close()
	for i, n := range []int{0, 1000, 3*segment.BlockSize + 17} {
		data := compressible(int64(i), n)
		backendtest.MustPut(t, b, 1, data)
		raw := mustRead(t, inner, 1, backend.Whole)
		zr, err := zstd.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		zr.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("zstd stream decode of a %d-byte segment: %d bytes, err %v", n, len(got), err)
		}
		if path, err := exec.LookPath("zstd"); err == nil {
			cmd := exec.Command(path, "-d", "-c")
			cmd.Stdin = bytes.NewReader(raw)
			got, err := cmd.Output()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("zstd -d of a %d-byte segment: %d bytes, err %v", n, len(got), err)
			}
		}
	}
}

func TestLargeGzipIndexSpansMembers(t *testing.T) {
	lens := make([]int64, 20000) // 160000 index bytes: three chunk members
	crcs := make([]uint32, len(lens))
	for i := range lens {
		lens[i], crcs[i] = int64(100+i%7), uint32(i)
	}
	var framesEnd int64
	for _, n := range lens {
		framesEnd += n
	}
	tr := trailer(codecGzip, framesEnd, int64(len(lens))*segment.BlockSize, 42, lens, crcs)
	obj := append(make([]byte, framesEnd), tr...)
	f, ok, err := findFooter(obj[len(obj)-tailProbe:])
	if !ok || err != nil {
		t.Fatalf("footer: %v %v", ok, err)
	}
	off, end, err := f.indexRegion(int64(len(obj)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := parseIndex(f, obj[off:end])
	if err != nil {
		t.Fatal(err)
	}
	if len(l.crcs) != len(lens) || l.crcs[19999] != 19999 || l.offs[len(lens)] != framesEnd {
		t.Fatalf("parsed %d blocks ending at %d", len(l.crcs), l.offs[len(lens)])
	}
	zr, err := gzip.NewReader(bytes.NewReader(tr))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(zr); err != nil || len(got) != 0 {
		t.Fatalf("trailer members as gzip: %d bytes, %v", len(got), err)
	}
}

func TestPutAbortsOnChecksumMismatch(t *testing.T) {
	inner := mustLocal(t)
	b := mustNew(t, inner, Zstd)
	defer b.Close()
	data := compressible(5, 2*segment.BlockSize)
	sums := segment.Sum(data)
	sums.Blocks[1] ^= 1
	if _, err := b.Put(ctx, 1, bytes.NewReader(data), backend.PutOptions{Size: -1, Sums: sums}); !errors.Is(err, segment.ErrChecksum) {
		t.Fatalf("put with wrong sums: %v", err)
	}
	if _, err := inner.Stat(ctx, 1); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("inner object after aborted put: %v", err)
	}
}

// FuzzParseTrailer feeds arbitrary objects to the footer and index
// parsers: no panic, and what they accept bounds every buffer a read of
// the object allocates (block size, frame lengths).
func FuzzParseTrailer(f *testing.F) {
	for _, mode := range []Mode{Zstd, Gzip} {
		for _, n := range []int{0, 1, 3*segment.BlockSize + 1} {
			lens := make([]int64, (n+segment.BlockSize-1)/segment.BlockSize)
			crcs := make([]uint32, len(lens))
			var end int64
			for i := range lens {
				lens[i] = 10
				end += 10
			}
			codec := byte(codecZstd)
			if mode == Gzip {
				codec = codecGzip
			}
			f.Add(append(make([]byte, end), trailer(codec, end, int64(n), 7, lens, crcs)...))
		}
	}
	f.Add([]byte("SFZBLK01"))
	f.Fuzz(func(t *testing.T, obj []byte) {
		tail := obj[max(0, len(obj)-tailProbe):]
		fo, ok, err := findFooter(tail)
		if !ok || err != nil {
			return
		}
		off, end, err := fo.indexRegion(int64(len(obj)))
		if err != nil || off < 0 || end > int64(len(obj)) || off > end {
			return
		}
		l, err := parseIndex(fo, obj[off:end])
		if err != nil {
			return
		}
		if int64(len(l.crcs)) != fo.blocks || l.offs[len(l.crcs)] > fo.indexOff {
			t.Fatalf("accepted index of %d blocks ending at %d for footer %+v", len(l.crcs), l.offs[len(l.crcs)], fo)
		}
		// What a reader will allocate is bounded by the format, not by
		// what the object claims.
		if l.blockSize != segment.BlockSize {
			t.Fatalf("accepted block size %d", l.blockSize)
		}
		for i := range l.crcs {
			if n := l.offs[i+1] - l.offs[i]; n <= 0 || n > maxFrameLen {
				t.Fatalf("accepted frame %d of %d bytes", i, n)
			}
		}
	})
}

// statCounting counts Stat calls on top of counting's Gets.
type statCounting struct {
	*counting
	stats int
}

func (c *statCounting) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	c.stats++
	return c.counting.Stat(ctx, id)
}

// TestWholeSmallReadIsOneGet: a whole read of a small object whose format a
// fresh wrapper does not know yet is one GET and no Stat, for a plain object
// and for a compressed one alike.
func TestWholeSmallReadIsOneGet(t *testing.T) {
	local := mustLocal(t)
	writer := mustNew(t, local, Zstd)
	plainWriter := mustNew(t, local, None)
	data := compressible(5, 3*segment.BlockSize+100)
	backendtest.MustPut(t, writer, 1, data)
	backendtest.MustPut(t, plainWriter, 2, data[:70000])
	for _, c := range []struct {
		id   segment.ID
		want []byte
	}{{1, data}, {2, data[:70000]}} {
		inner := &statCounting{counting: &counting{Backend: local}}
		fresh := mustNew(t, inner, None)
		info, err := local.Stat(ctx, c.id)
		if err != nil {
			t.Fatal(err)
		}
		got := mustRead(t, fresh, c.id, backend.GetOptions{Length: -1, Version: info.Version})
		if !bytes.Equal(got, c.want) {
			t.Fatalf("segment %d: whole read differs", c.id)
		}
		if inner.gets.Load() != 1 || inner.stats != 0 {
			t.Fatalf("segment %d: %d GETs and %d Stats for one whole read, want 1 and 0", c.id, inner.gets.Load(), inner.stats)
		}
	}
}
