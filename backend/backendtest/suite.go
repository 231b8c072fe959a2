// Package backendtest is the conformance suite for backend.Backend. Every
// backend and every wrapper runs it from a test that hands Run a factory;
// the suite checks the contract written in the backend package's doc
// comments, so implementations cannot drift from it.
package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// Factory returns a new, empty backend. The suite closes it.
type Factory func(t *testing.T) backend.Backend

// Options tune the suite to a backend's costs.
type Options struct {
	// LargeSize is the size of the "large segment" cases; it should cross
	// any chunking or multipart threshold of the backend.
	LargeSize int64
}

// Run runs every conformance test against backends made by newBackend.
func Run(t *testing.T, newBackend Factory, opts Options) {
	if opts.LargeSize == 0 {
		opts.LargeSize = 20 << 20
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, b backend.Backend, o Options)
	}{
		{"PutGetSizes", testPutGetSizes},
		{"PutUnknownSize", testPutUnknownSize},
		{"PutSizeMismatch", testPutSizeMismatch},
		{"PutChecksumMismatch", testPutChecksumMismatch},
		{"Overwrite", testOverwrite},
		{"Ranges", testRanges},
		{"Stat", testStat},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"DeleteIfVersion", testDeleteIfVersion},
		{"GetVersion", testGetVersion},
		{"ListOrderAndExtremes", testList},
		{"ListStopsOnError", testListStop},
		{"Concurrent", testConcurrent},
		{"LargeRange", testLargeRange},
		{"FailedPutKeepsOld", testFailedPutKeepsOld},
		{"CutStreamKeepsOld", testCutStreamKeepsOld},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			t.Cleanup(func() { b.Close() })
			tc.fn(t, b, opts)
		})
	}
}

var ctx = context.Background()

// RandomBytes returns n deterministic pseudo-random bytes: the same seed
// and length give the same bytes in every test of every package.
func RandomBytes[N int | int64](seed int64, n N) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// MustPut stores data as segment id in b, with the checksums a writer
// computes, and checks what Put reports; any failure ends the test. Every
// package's tests share it.
func MustPut(t testing.TB, b backend.Backend, id segment.ID, data []byte) segment.Info {
	t.Helper()
	info, err := b.Put(ctx, id, bytes.NewReader(data), backend.PutOptions{Size: int64(len(data)), Sums: segment.Sum(data)})
	if err != nil {
		t.Fatalf("put %d (%d bytes): %v", id, len(data), err)
	}
	if info.Size != int64(len(data)) || info.ID != id {
		t.Fatalf("put %d: info %+v, want size %d", id, info, len(data))
	}
	if info.Sums == nil || info.Sums.Whole != segment.Sum(data).Whole {
		t.Fatalf("put %d: checksums %v, want %v", id, info.Sums, segment.Sum(data))
	}
	return info
}

func mustGet(t *testing.T, b backend.Backend, id segment.ID, o backend.GetOptions) []byte {
	t.Helper()
	r, err := b.Get(ctx, id, o)
	if err != nil {
		t.Fatalf("get %d %+v: %v", id, o, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %d %+v: %v", id, o, err)
	}
	return got
}

func mustEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes, want %d (first difference at %d)", what, len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) == len(b) {
		return -1
	}
	return min(len(a), len(b))
}

func testPutGetSizes(t *testing.T, b backend.Backend, o Options) {
	for i, n := range []int64{0, 1, 1000, segment.BlockSize - 1, segment.BlockSize, segment.BlockSize + 1, 3*segment.BlockSize + 17, o.LargeSize} {
		id := segment.ID(i + 1)
		data := RandomBytes(int64(i), n)
		MustPut(t, b, id, data)
		mustEqual(t, fmt.Sprintf("segment of %d bytes", n), mustGet(t, b, id, backend.Whole), data)
	}
}

// onlyReader hides any Seek/Len methods so backends see an unknown-size
// stream.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func testPutUnknownSize(t *testing.T, b backend.Backend, o Options) {
	for i, n := range []int64{0, 5000, o.LargeSize + 3} {
		data := RandomBytes(int64(100+i), n)
		info, err := b.Put(ctx, segment.ID(i), onlyReader{bytes.NewReader(data)}, backend.PutOptions{Size: -1})
		if err != nil {
			t.Fatalf("put unknown size %d: %v", n, err)
		}
		if info.Size != n {
			t.Fatalf("put unknown size %d: info size %d", n, info.Size)
		}
		mustEqual(t, "unknown-size put", mustGet(t, b, segment.ID(i), backend.Whole), data)
	}
}

func testPutSizeMismatch(t *testing.T, b backend.Backend, o Options) {
	data := RandomBytes(7, 4096)
	_, err := b.Put(ctx, 9, bytes.NewReader(data), backend.PutOptions{Size: 5000})
	if !errors.Is(err, backend.ErrInvalid) {
		t.Fatalf("put with wrong size: err %v, want ErrInvalid", err)
	}
	if _, err := b.Stat(ctx, 9); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("after failed put: stat err %v, want ErrNotFound", err)
	}
}

func testPutChecksumMismatch(t *testing.T, b backend.Backend, o Options) {
	data := RandomBytes(8, 3*segment.BlockSize/2)
	sums := segment.Sum(data)
	sums.Blocks[1] ^= 1
	sums.Whole ^= 1
	_, err := b.Put(ctx, 10, bytes.NewReader(data), backend.PutOptions{Size: int64(len(data)), Sums: sums})
	if !errors.Is(err, segment.ErrChecksum) {
		t.Fatalf("put with wrong sums: err %v, want ErrChecksum", err)
	}
	if _, err := b.Stat(ctx, 10); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("after failed put: stat err %v, want ErrNotFound", err)
	}
	MustPut(t, b, 10, data) // and a correct one still works
}

func testOverwrite(t *testing.T, b backend.Backend, o Options) {
	first := RandomBytes(1, 3*segment.BlockSize)
	second := RandomBytes(2, 1000)
	MustPut(t, b, 5, first)
	MustPut(t, b, 5, second)
	mustEqual(t, "after overwrite", mustGet(t, b, 5, backend.Whole), second)
	info, err := b.Stat(ctx, 5)
	if err != nil || info.Size != 1000 {
		t.Fatalf("stat after overwrite: %+v %v", info, err)
	}
}

func testRanges(t *testing.T, b backend.Backend, o Options) {
	data := RandomBytes(3, 2*segment.BlockSize+12345)
	MustPut(t, b, 77, data)
	n := int64(len(data))
	cases := []struct{ off, length int64 }{
		{0, 1}, {0, 4096}, {1, 10}, {segment.BlockSize - 5, 10}, {segment.BlockSize, segment.BlockSize},
		{n - 1, 1}, {n - 10, 100}, {n, 10}, {n + 5, 10}, {12345, -1}, {0, -1}, {segment.BlockSize + 7, 0},
	}
	for _, c := range cases {
		got := mustGet(t, b, 77, backend.GetOptions{Offset: c.off, Length: c.length})
		lo := min(c.off, n)
		hi := n
		if c.length >= 0 {
			hi = min(c.off+c.length, n)
		}
		mustEqual(t, fmt.Sprintf("range off=%d len=%d", c.off, c.length), got, data[lo:max(lo, hi)])
	}
}

func testStat(t *testing.T, b backend.Backend, o Options) {
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	data := RandomBytes(4, 12345)
	if _, err := b.Put(ctx, 12, bytes.NewReader(data), backend.PutOptions{Size: -1, ModTime: mtime}); err != nil {
		t.Fatal(err)
	}
	info, err := b.Stat(ctx, 12)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != 12 || info.Size != 12345 {
		t.Fatalf("stat: %+v", info)
	}
	if !info.ModTime.Equal(mtime) {
		t.Fatalf("stat mtime %v, want %v", info.ModTime, mtime)
	}
	if info.Version == "" {
		t.Fatalf("stat: empty version")
	}
	if info.Sums == nil || info.Sums.Whole != segment.Sum(data).Whole {
		t.Fatalf("stat: checksums %v, want %v", info.Sums, segment.Sum(data))
	}
	if len(info.Sums.Blocks) != 1 {
		t.Fatalf("stat: %d block sums for 12345 bytes", len(info.Sums.Blocks))
	}
}

func testNotFound(t *testing.T, b backend.Backend, o Options) {
	if _, err := b.Stat(ctx, 404); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat missing: %v", err)
	}
	if _, err := b.Get(ctx, 404, backend.Whole); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	if err := b.Delete(ctx, 404, ""); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
}

func testDelete(t *testing.T, b backend.Backend, o Options) {
	MustPut(t, b, 3, RandomBytes(5, 3*segment.BlockSize))
	MustPut(t, b, 4, RandomBytes(6, 10))
	if err := b.Delete(ctx, 3, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, 3); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat after delete: %v", err)
	}
	ids := listIDs(t, b)
	if len(ids) != 1 || ids[0] != 4 {
		t.Fatalf("list after delete: %v", ids)
	}
}

func testDeleteIfVersion(t *testing.T, b backend.Backend, o Options) {
	v1 := MustPut(t, b, 6, []byte("one"))
	v2 := MustPut(t, b, 6, []byte("two!"))
	if v1.Version == v2.Version {
		t.Fatalf("two puts share version %q", v1.Version)
	}
	if err := b.Delete(ctx, 6, v1.Version); !errors.Is(err, backend.ErrStale) {
		t.Fatalf("delete of old version: %v, want ErrStale", err)
	}
	mustEqual(t, "after refused delete", mustGet(t, b, 6, backend.Whole), []byte("two!"))
	if err := b.Delete(ctx, 6, v2.Version); err != nil {
		t.Fatalf("delete current version: %v", err)
	}
	if _, err := b.Stat(ctx, 6); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat after conditional delete: %v", err)
	}
}

func testGetVersion(t *testing.T, b backend.Backend, o Options) {
	v1 := MustPut(t, b, 8, []byte("version one"))
	got := mustGet(t, b, 8, backend.GetOptions{Length: -1, Version: v1.Version})
	mustEqual(t, "get with current version", got, []byte("version one"))
	MustPut(t, b, 8, []byte("version two"))
	r, err := b.Get(ctx, 8, backend.GetOptions{Length: -1, Version: v1.Version})
	if err == nil {
		got, rerr := io.ReadAll(r)
		r.Close()
		// A backend that can still serve a pinned old version may do so,
		// but never the new bytes under the old version.
		if rerr == nil && !bytes.Equal(got, []byte("version one")) {
			t.Fatalf("get of replaced version returned %q", got)
		}
		if rerr != nil && !errors.Is(rerr, backend.ErrStale) {
			t.Fatalf("get of replaced version: read error %v", rerr)
		}
	} else if !errors.Is(err, backend.ErrStale) {
		t.Fatalf("get of replaced version: %v, want ErrStale", err)
	}
}

func listIDs(t *testing.T, b backend.Backend) []segment.ID {
	t.Helper()
	var ids []segment.ID
	err := b.List(ctx, func(i segment.Info) error {
		ids = append(ids, i.ID)
		return nil
	})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	return ids
}

func testList(t *testing.T, b backend.Backend, o Options) {
	want := []segment.ID{0, 1, 2, 9, 10, 255, 256, 1 << 32, 1<<63 - 1, 1 << 63, 1<<64 - 1}
	for i := len(want) - 1; i >= 0; i-- {
		MustPut(t, b, want[i], []byte(want[i].String()))
	}
	got := listIDs(t, b)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("list: %v, want %v", got, want)
	}
	err := b.List(ctx, func(i segment.Info) error {
		if i.Unresolved { // the listing could not tell; Stat must
			id := i.ID
			var err error
			if i, err = b.Stat(ctx, id); err != nil {
				return fmt.Errorf("segment %d: stat of unresolved entry: %w", id, err)
			}
		}
		if i.Size != int64(len(i.ID.String())) {
			return fmt.Errorf("segment %d: listed size %d", i.ID, i.Size)
		}
		if i.ModTime.IsZero() {
			return fmt.Errorf("segment %d: zero mtime in listing", i.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []segment.ID{1<<64 - 1, 0} {
		mustEqual(t, "extreme id", mustGet(t, b, id, backend.Whole), []byte(id.String()))
	}
}

func testListStop(t *testing.T, b backend.Backend, o Options) {
	for i := 1; i <= 5; i++ {
		MustPut(t, b, segment.ID(i), []byte("x"))
	}
	stop := errors.New("stop")
	n := 0
	err := b.List(ctx, func(segment.Info) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("list stop: err %v after %d calls", err, n)
	}
}

func testConcurrent(t *testing.T, b backend.Backend, o Options) {
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				id := segment.ID(1000 + w*10 + i)
				data := RandomBytes(int64(id), int64(1000*(w+1)+i*segment.BlockSize/3))
				if _, err := b.Put(ctx, id, bytes.NewReader(data), backend.PutOptions{Size: int64(len(data))}); err != nil {
					errs <- err
					return
				}
				r, err := b.Get(ctx, id, backend.Whole)
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(r)
				r.Close()
				if err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("segment %d: concurrent round trip differs (err %v)", id, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(listIDs(t, b)); n != 32 {
		t.Fatalf("listed %d segments after concurrent puts, want 32", n)
	}
}

func testLargeRange(t *testing.T, b backend.Backend, o Options) {
	data := RandomBytes(11, o.LargeSize)
	MustPut(t, b, 99, data)
	off := o.LargeSize/2 + 123
	mustEqual(t, "4 KiB range of a large segment", mustGet(t, b, 99, backend.GetOptions{Offset: off, Length: 4096}), data[off:off+4096])
}

// failingReader yields some bytes and then an error.
type failingReader struct {
	r   io.Reader
	n   int64
	err error // returned once n bytes were read; a generic failure when nil
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		if f.err != nil {
			return 0, f.err
		}
		return 0, errors.New("injected read failure")
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

func testFailedPutKeepsOld(t *testing.T, b backend.Backend, o Options) {
	old := RandomBytes(12, 5000)
	MustPut(t, b, 50, old)
	big := RandomBytes(13, o.LargeSize)
	_, err := b.Put(ctx, 50, &failingReader{r: bytes.NewReader(big), n: o.LargeSize / 2}, backend.PutOptions{Size: o.LargeSize})
	if err == nil {
		t.Fatal("put from a failing reader succeeded")
	}
	mustEqual(t, "after failed overwrite", mustGet(t, b, 50, backend.Whole), old)
}

// testCutStreamKeepsOld: a stream of unknown size that ends with
// io.ErrUnexpectedEOF (an HTTP body whose sender went away mid-way) is a
// failed put, not a short segment: the old version stays.
func testCutStreamKeepsOld(t *testing.T, b backend.Backend, o Options) {
	old := RandomBytes(14, 5000)
	MustPut(t, b, 51, old)
	for _, cut := range []int64{0, 1000, segment.BlockSize + 7, 3 * segment.BlockSize} {
		src := RandomBytes(15, 4*segment.BlockSize)
		r := &failingReader{r: onlyReader{bytes.NewReader(src)}, n: cut, err: io.ErrUnexpectedEOF}
		if info, err := b.Put(ctx, 51, r, backend.PutOptions{Size: -1}); err == nil {
			t.Fatalf("put of a stream cut after %d bytes succeeded: %+v", cut, info)
		}
		mustEqual(t, fmt.Sprintf("after a put cut at %d bytes", cut), mustGet(t, b, 51, backend.Whole), old)
	}
}
