package compress

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"hash/crc32"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/mem"
	"github.com/scribefs/scribefs/segment"
)

// rawObject returns the object stored under id in inner.
func rawObject(t *testing.T, inner backend.Backend, id segment.ID) []byte {
	t.Helper()
	r, err := inner.Get(ctx, id, backend.Whole)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putRaw stores obj under id in inner, as a hostile writer of the bucket
// would.
func putRaw(t *testing.T, inner backend.Backend, id segment.ID, obj []byte) {
	t.Helper()
	if _, err := inner.Put(ctx, id, bytes.NewReader(obj), backend.PutOptions{Size: int64(len(obj))}); err != nil {
		t.Fatal(err)
	}
}

// withFooter rewrites the footer of a zstd object (at its end) with f.
func withFooter(obj []byte, f footer) []byte {
	out := append([]byte(nil), obj[:len(obj)-footerLen]...)
	return append(out, f.marshal()...)
}

// allocDuring reports how many bytes fn allocated.
func allocDuring(fn func()) uint64 {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	fn()
	runtime.ReadMemStats(&m1)
	return m1.TotalAlloc - m0.TotalAlloc
}

// readAllOf reads segment id whole and at one range through b.
func readAllOf(b *Backend, id segment.ID) error {
	for _, o := range []backend.GetOptions{backend.Whole, {Offset: 3, Length: 10}} {
		r, err := b.Get(ctx, id, o)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, r)
		r.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// TestFooterBlockSizeBomb: a footer that claims a 4 GiB block size (a
// 91-byte object) is refused, and reading it allocates nothing of that
// size. The block size is the format's, nothing else.
func TestFooterBlockSizeBomb(t *testing.T) {
	inner := mem.New(segment.TierCold)
	b := mustNew(t, inner, Zstd)
	data := []byte("0123456789")
	if _, err := b.Put(ctx, 1, bytes.NewReader(data), backend.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	obj := rawObject(t, inner, 1)
	f, ok, err := parseFooter(obj[len(obj)-footerLen:])
	if !ok || err != nil {
		t.Fatalf("footer of a fresh object: %v %v", ok, err)
	}
	for _, bs := range []int64{1<<32 - 1, 256 << 20, segment.BlockSize * 2, segment.BlockSize / 2} {
		f.blockSize = bs
		putRaw(t, inner, 1, withFooter(obj, f))
		var err error
		alloc := allocDuring(func() {
			_, err = b.Stat(ctx, 1)
			if err == nil {
				err = readAllOf(b, 1)
			}
		})
		if err == nil {
			t.Fatalf("block size %d: an object of %d bytes was read", bs, len(obj))
		}
		if !strings.Contains(err.Error(), "block size") {
			t.Errorf("block size %d: error does not say why: %v", bs, err)
		}
		if alloc > 16<<20 {
			t.Fatalf("block size %d: refusing a %d-byte object allocated %d MiB", bs, len(obj), alloc>>20)
		}
	}
}

// TestGzipFrameBomb: a gzip frame of zeros that inflates far past the
// format's block (a footer claiming a 256 MiB block, with the matching
// CRC32C) is refused without inflating it.
func TestGzipFrameBomb(t *testing.T) {
	const claimed = 256 << 20
	var frame bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&frame, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	sum := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	for range claimed >> 20 {
		zw.Write(zeros)
		sum.Write(zeros)
	}
	crc := sum.Sum32()
	zw.Close()
	var obj bytes.Buffer
	obj.Write(frame.Bytes())
	indexOff := int64(obj.Len())
	index := binary.LittleEndian.AppendUint32(nil, uint32(frame.Len()))
	index = binary.LittleEndian.AppendUint32(index, crc)
	obj.Write(appendGzipMember(nil, index))
	f := footer{codec: codecGzip, blockSize: claimed, size: claimed, whole: crc, blocks: 1,
		indexOff: indexOff, indexLen: int64(len(index)), indexCRC: segment.CRC32C(index)}
	obj.Write(appendGzipMember(nil, f.marshal()))

	inner := mem.New(segment.TierCold)
	putRaw(t, inner, 2, obj.Bytes())
	b := mustNew(t, inner, Gzip)
	var err error
	alloc := allocDuring(func() {
		_, err = b.Stat(ctx, 2)
		if err == nil {
			err = readAllOf(b, 2)
		}
	})
	if err == nil {
		t.Fatalf("a %d-byte object claiming %d MiB was served", obj.Len(), claimed>>20)
	}
	if alloc > 16<<20 {
		t.Fatalf("refusing a %d-byte gzip bomb allocated %d MiB", obj.Len(), alloc>>20)
	}
}
