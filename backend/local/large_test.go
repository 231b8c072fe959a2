package local

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/segment"
)

// blockReader yields size bytes repeating a block, with the block index
// stamped into the first 8 bytes of each copy so every chunk differs.
type stampedReader struct {
	block []byte
	off   int64
	size  int64
}

func (r *stampedReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	n := copy(p, stamped(r.block, r.off)[r.off%int64(len(r.block)):])
	n = int(min(int64(n), r.size-r.off))
	r.off += int64(n)
	return n, nil
}

func stamped(block []byte, off int64) []byte {
	b := bytes.Clone(block)
	i := off / int64(len(block))
	for k := 0; k < 8; k++ {
		b[k] = byte(i >> (8 * k))
	}
	return b
}

// TestFiveGiBSegment: a 5 GiB segment is stored over many transactions with
// bounded memory, and a 4 KiB read at any offset reads only its chunk.
func TestFiveGiBSegment(t *testing.T) {
	const size = 5 << 30
	b := mustOpen(t, filepath.Join(t.TempDir(), "hot.db"))
	defer b.Close()
	block := backendtest.RandomBytes(5, segment.BlockSize)

	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	start := time.Now()
	info, err := b.Put(context.Background(), 1, &stampedReader{block: block, size: size}, backend.PutOptions{Size: size})
	close(stop)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if info.Size != size || len(info.Sums.Blocks) != size/segment.BlockSize {
		t.Fatalf("info: size %d, %d block sums", info.Size, len(info.Sums.Blocks))
	}
	// One Update for the whole segment would hold 5 GiB of dirty pages.
	if p := peak.Load(); p > 512<<20 {
		t.Fatalf("heap in use peaked at %d MiB while storing 5 GiB", p>>20)
	}
	t.Logf("stored 5 GiB in %v (%.0f MB/s), heap in use peaked at %d MiB", took.Round(time.Millisecond), float64(size)/took.Seconds()/1e6, peak.Load()>>20)

	for _, off := range []int64{0, size/2 + 12345, size - 4096} {
		start := time.Now()
		r, err := b.Get(context.Background(), 1, backend.GetOptions{Offset: off, Length: 4096})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := stamped(block, off)[off%segment.BlockSize:]
		if int64(len(want)) > 4096 {
			want = want[:4096]
		}
		if !bytes.Equal(got[:len(want)], want) {
			t.Fatalf("4 KiB at %d differs", off)
		}
		t.Logf("4 KiB read at offset %d: %v", off, time.Since(start).Round(time.Microsecond))
	}
}
