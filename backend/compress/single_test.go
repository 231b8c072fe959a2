package compress

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/segment"
)

// TestGzipIsOneMember: a decoder that reads ONE gzip member and stops, as
// Scribe Ledger nodes' flate2 GzDecoder does, gets the whole segment, its
// CRC checked, at every size; ranged reads still fetch only their frames.
func TestGzipIsOneMember(t *testing.T) {
	inner := &counting{Backend: mustLocal(t)}
	b := mustNew(t, inner, Gzip)
	defer b.Close()
	for i, n := range []int{0, 1, 1000, segment.BlockSize, 3*segment.BlockSize + 17} {
		data := compressible(int64(i), n)
		backendtest.MustPut(t, b, 1, data)
		raw := mustRead(t, inner, 1, backend.Whole)
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false)
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("one member of a %d-byte segment: %d bytes, err %v", n, len(got), err)
		}
		if n < 3*segment.BlockSize {
			continue
		}
		// A range inside block 2 reads only block 2's frame.
		before := inner.bytes.Load()
		off := int64(2*segment.BlockSize + 5)
		part := mustRead(t, b, 1, backend.GetOptions{Offset: off, Length: 100})
		if !bytes.Equal(part, data[off:off+100]) {
			t.Fatal("ranged read returned other bytes")
		}
		if read := inner.bytes.Load() - before; read > segment.BlockSize/2 {
			t.Fatalf("ranged read of 100 bytes fetched %d stored bytes", read)
		}
	}
}

// TestGzipMultiMemberStillReadable: objects in the version 1 gzip format
// (one member per block), which earlier versions wrote, read whole and by
// range.
func TestGzipMultiMemberStillReadable(t *testing.T) {
	inner := mustLocal(t)
	b := mustNew(t, inner, Gzip)
	defer b.Close()
	data := compressible(9, 2*segment.BlockSize+300)
	var obj []byte
	var lens []int64
	for off := 0; off < len(data); off += segment.BlockSize {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(data[off:min(off+segment.BlockSize, len(data))])
		zw.Close()
		obj = append(obj, buf.Bytes()...)
		lens = append(lens, int64(buf.Len()))
	}
	sums := segment.Sum(data)
	obj = append(obj, trailer(codecGzip, int64(len(obj)), int64(len(data)), sums.Whole, lens, sums.Blocks)...)
	backendtest.MustPut(t, inner, 4, obj)
	if got := mustRead(t, b, 4, backend.Whole); !bytes.Equal(got, data) {
		t.Fatal("whole read of a version 1 object differs")
	}
	off := int64(segment.BlockSize + 7)
	if got := mustRead(t, b, 4, backend.GetOptions{Offset: off, Length: segment.BlockSize}); !bytes.Equal(got, data[off:off+segment.BlockSize]) {
		t.Fatal("ranged read of a version 1 object differs")
	}
	info, err := b.Stat(ctx, 4)
	if err != nil || info.Size != int64(len(data)) || info.Compression != CompressionGzip {
		t.Fatalf("stat %+v %v", info, err)
	}
}
