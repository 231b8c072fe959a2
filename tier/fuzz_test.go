package tier

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/cache"
	"github.com/scribefs/scribefs/segment"
)

// coldSizes are the sizes of the cold segments FuzzColdRange reads: around
// block boundaries, and larger than the fuzz cache so blocks get evicted.
var coldSizes = []int{1, segment.BlockSize - 1, segment.BlockSize, segment.BlockSize + 1, 3*segment.BlockSize + 17, 5 * segment.BlockSize}

// FuzzColdRange reads random (offset, length) ranges of cold segments
// through the tiered store, over a bbolt "cold" backend and a small block
// cache, and compares them with the bytes stored: the block arithmetic of
// readCold, the read-ahead spans and the cache must never return a wrong,
// missing or extra byte, and a read past the end says io.EOF.
func FuzzColdRange(f *testing.F) {
	dir := f.TempDir()
	hot, err := local.Open(filepath.Join(dir, "hot.db"), local.Options{})
	if err != nil {
		f.Fatal(err)
	}
	coldDB, err := local.Open(filepath.Join(dir, "cold.db"), local.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { hot.Close(); coldDB.Close() })
	s, err := New(hot, hot.Index(), &faulty{Backend: coldDB}, cache.New(2*segment.BlockSize), Config{ReadAhead: 2 * segment.BlockSize, FetchSpan: segment.BlockSize})
	if err != nil {
		f.Fatal(err)
	}
	data := make([][]byte, len(coldSizes))
	for i, n := range coldSizes {
		data[i] = backendtest.RandomBytes(int64(i), int64(n))
		if _, err := s.Put(ctx, segment.ID(i+1), bytes.NewReader(data[i]), int64(n), time.Time{}); err != nil {
			f.Fatal(err)
		}
		if err := s.Archive(ctx, segment.ID(i+1)); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(uint8(0), int64(0), uint32(1))
	f.Add(uint8(1), int64(segment.BlockSize-2), uint32(10))
	f.Add(uint8(3), int64(segment.BlockSize), uint32(1))
	f.Add(uint8(4), int64(segment.BlockSize-1), uint32(2*segment.BlockSize+3))
	f.Add(uint8(5), int64(4*segment.BlockSize+5), uint32(segment.BlockSize))
	f.Fuzz(func(t *testing.T, which uint8, off int64, n uint32) {
		i := int(which) % len(coldSizes)
		want := data[i]
		if off < 0 || off > int64(len(want))+segment.BlockSize {
			return
		}
		n %= 6 * segment.BlockSize
		r, err := s.Open(ctx, segment.ID(i+1))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if r.Info().Tier != segment.TierCold {
			t.Fatalf("segment %d is %v", i+1, r.Info().Tier)
		}
		buf := make([]byte, n)
		got, err := r.ReadAt(buf, off)
		end := min(off+int64(n), int64(len(want)))
		wantN := max(end-off, 0)
		if int64(got) != wantN {
			t.Fatalf("ReadAt(%d bytes at %d) of %d: n = %d, want %d (err %v)", n, off, len(want), got, wantN, err)
		}
		if wantN > 0 && !bytes.Equal(buf[:got], want[off:end]) {
			t.Fatalf("ReadAt(%d bytes at %d) of %d: wrong bytes", n, off, len(want))
		}
		switch {
		case int64(got) < int64(n) && !errors.Is(err, io.EOF):
			t.Fatalf("short read (%d of %d) without io.EOF: %v", got, n, err)
		case int64(got) == int64(n) && err != nil && !errors.Is(err, io.EOF):
			t.Fatalf("full read with error %v", err)
		}
	})
}
