package compress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/scribefs/scribefs/segment"
)

// The format is described in doc.go.

const (
	footerLen     = 52
	formatVersion = 1
	// formatSingle is the version of a gzip object whose frames are one
	// gzip member (see doc.go); version 1 gzip objects have a member per
	// block and stay readable.
	formatSingle = 2

	codecZstd = 1
	codecGzip = 2

	zstdSkippableMagic = 0x184D2A5E
	zstdSkippableHdr   = 8

	gzipChunkMax = 65000
	// gzipOverhead is what an empty member adds around its FEXTRA payload:
	// 10-byte header, XLEN, the subfield id and length, and the 10-byte end.
	gzipOverhead     = 10 + 2 + 4 + 10
	gzipFooterMember = gzipOverhead + footerLen

	// maxFrameLen bounds one block's compressed frame: more than zstd or
	// deflate (stored blocks, the worst case) ever write for one block.
	// A reader allocates a frame buffer of the length the index gives,
	// so the index may not name more.
	maxFrameLen = segment.BlockSize + segment.BlockSize/64 + 4096

	// tailProbe is how much of an object's end Stat reads: the footer, and
	// the index of a segment of up to about 1 GiB.
	tailProbe = 8 << 10
)

var (
	footerMagic = []byte("SFZBLK01")
	gzipHeader  = []byte{0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff}
	// singleHeader opens the one data member of a formatSingle object: no
	// flags, mtime 0, OS unknown, as flate2's GzEncoder writes it.
	singleHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}
	// finalBlock is an empty final stored deflate block. After a full
	// flush the stream is byte-aligned, so it ends the member's deflate
	// stream, and appended to one frame it makes that frame a complete
	// deflate stream on its own.
	finalBlock = []byte{1, 0, 0, 0xff, 0xff}
	gzipEnd    = []byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 0}
)

// errFormat is returned (wrapped) by the parsers for bytes that carry the
// footer magic but do not describe a valid object.
var errFormat = errors.New("bad compressed-object trailer")

// footer is the fixed-size record at the end of an object.
type footer struct {
	version   byte // formatVersion, or formatSingle for gzip; 0 means formatVersion
	codec     byte
	blockSize int64
	size      int64
	whole     uint32
	blocks    int64
	indexOff  int64
	indexLen  int64
	indexCRC  uint32
}

func (f footer) marshal() []byte {
	b := make([]byte, footerLen)
	copy(b, footerMagic)
	b[8] = formatVersion
	if f.version != 0 {
		b[8] = f.version
	}
	b[9] = f.codec
	binary.LittleEndian.PutUint32(b[12:], uint32(f.blockSize))
	binary.LittleEndian.PutUint64(b[16:], uint64(f.size))
	binary.LittleEndian.PutUint32(b[24:], f.whole)
	binary.LittleEndian.PutUint32(b[28:], uint32(f.blocks))
	binary.LittleEndian.PutUint64(b[32:], uint64(f.indexOff))
	binary.LittleEndian.PutUint32(b[40:], uint32(f.indexLen))
	binary.LittleEndian.PutUint32(b[44:], f.indexCRC)
	binary.LittleEndian.PutUint32(b[48:], segment.CRC32C(b[:48]))
	return b
}

// parseFooter decodes b, which must be footerLen bytes. ok is false when b
// does not start with the magic (a plain object); err is set when it does
// but the footer is damaged or unsupported.
func parseFooter(b []byte) (f footer, ok bool, err error) {
	if len(b) != footerLen || !bytes.Equal(b[:8], footerMagic) {
		return footer{}, false, nil
	}
	if got, want := segment.CRC32C(b[:48]), binary.LittleEndian.Uint32(b[48:]); got != want {
		return footer{}, true, fmt.Errorf("%w: footer crc32c %08x, recorded %08x", errFormat, got, want)
	}
	if b[8] != formatVersion && (b[8] != formatSingle || b[9] != codecGzip) {
		return footer{}, true, fmt.Errorf("%w: format version %d", errFormat, b[8])
	}
	f = footer{
		version:   b[8],
		codec:     b[9],
		blockSize: int64(binary.LittleEndian.Uint32(b[12:])),
		size:      int64(binary.LittleEndian.Uint64(b[16:])),
		whole:     binary.LittleEndian.Uint32(b[24:]),
		blocks:    int64(binary.LittleEndian.Uint32(b[28:])),
		indexOff:  int64(binary.LittleEndian.Uint64(b[32:])),
		indexLen:  int64(binary.LittleEndian.Uint32(b[40:])),
		indexCRC:  binary.LittleEndian.Uint32(b[44:]),
	}
	switch {
	case f.codec != codecZstd && f.codec != codecGzip:
		return footer{}, true, fmt.Errorf("%w: codec %d", errFormat, f.codec)
	case f.blockSize != segment.BlockSize:
		// The format has one block size. A footer may not choose
		// another: every buffer of a read is sized by it, so a hostile
		// object could claim gigabytes in a few bytes.
		return footer{}, true, fmt.Errorf("%w: block size %d, the format's is %d", errFormat, f.blockSize, segment.BlockSize)
	case f.size < 0 || f.indexOff < 0:
		return footer{}, true, fmt.Errorf("%w: size %d, index offset %d", errFormat, f.size, f.indexOff)
	case f.blocks != (f.size+f.blockSize-1)/f.blockSize:
		return footer{}, true, fmt.Errorf("%w: %d blocks for %d bytes", errFormat, f.blocks, f.size)
	case f.indexLen != 8*f.blocks:
		return footer{}, true, fmt.Errorf("%w: index of %d bytes for %d blocks", errFormat, f.indexLen, f.blocks)
	}
	return f, true, nil
}

// findFooter looks for the footer at the end of tail, the last bytes of an
// object: last for zstd, before the closing gzip end for gzip.
func findFooter(tail []byte) (f footer, ok bool, err error) {
	if n := len(tail); n >= footerLen {
		if f, ok, err := parseFooter(tail[n-footerLen:]); ok {
			if err == nil && f.codec != codecZstd {
				err = fmt.Errorf("%w: codec %d footer at the end", errFormat, f.codec)
			}
			return f, ok, err
		}
	}
	if n := len(tail); n >= gzipFooterMember && bytes.Equal(tail[n-len(gzipEnd):], gzipEnd) {
		if f, ok, err := parseFooter(tail[n-len(gzipEnd)-footerLen : n-len(gzipEnd)]); ok {
			if err == nil && f.codec != codecGzip {
				err = fmt.Errorf("%w: codec %d footer in a gzip member", errFormat, f.codec)
			}
			return f, ok, err
		}
	}
	return footer{}, false, nil
}

// indexRegion is the byte range [off, end) of a stored object of the given
// size that holds the index (wrapped in gzip members for gzip).
func (f footer) indexRegion(stored int64) (off, end int64, err error) {
	switch f.codec {
	case codecZstd:
		off, end = f.indexOff, f.indexOff+f.indexLen
		if end != stored-footerLen {
			return 0, 0, fmt.Errorf("%w: index [%d,%d) does not end at the footer (object of %d bytes)", errFormat, off, end, stored)
		}
	default:
		off, end = f.indexOff, stored-gzipFooterMember
		if end < off {
			return 0, 0, fmt.Errorf("%w: index offset %d past the footer (object of %d bytes)", errFormat, off, stored)
		}
	}
	return off, end, nil
}

// layout is a parsed index: where each block's frame lies and its checksum.
type layout struct {
	codec     byte
	single    bool  // gzip frames are parts of one member (formatSingle)
	size      int64 // original bytes
	blockSize int64
	whole     uint32
	offs      []int64 // frame i is [offs[i], offs[i+1]); len = blocks+1
	crcs      []uint32
}

// parseIndex checks region (the bytes indexRegion named) against f and
// decodes it.
func parseIndex(f footer, region []byte) (*layout, error) {
	payload := region
	if f.codec == codecGzip {
		var err error
		if payload, err = unwrapGzipChunks(region); err != nil {
			return nil, err
		}
	}
	if int64(len(payload)) != f.indexLen {
		return nil, fmt.Errorf("%w: index of %d bytes, footer says %d", errFormat, len(payload), f.indexLen)
	}
	if got := segment.CRC32C(payload); got != f.indexCRC {
		return nil, fmt.Errorf("%w: index crc32c %08x, recorded %08x", errFormat, got, f.indexCRC)
	}
	l := &layout{codec: f.codec, size: f.size, blockSize: f.blockSize, whole: f.whole,
		offs: make([]int64, f.blocks+1), crcs: make([]uint32, f.blocks), single: f.version == formatSingle}
	if l.single {
		l.offs[0] = int64(len(singleHeader))
	}
	for i := range f.blocks {
		n := int64(binary.LittleEndian.Uint32(payload[8*i:]))
		if n == 0 || n > maxFrameLen {
			return nil, fmt.Errorf("%w: frame of %d bytes for block %d (at most %d)", errFormat, n, i, maxFrameLen)
		}
		l.offs[i+1] = l.offs[i] + n
		l.crcs[i] = binary.LittleEndian.Uint32(payload[8*i+4:])
	}
	if end := l.offs[f.blocks]; end > f.indexOff || l.single && end+singleClose != f.indexOff {
		return nil, fmt.Errorf("%w: frames end at %d, index at %d", errFormat, end, f.indexOff)
	}
	return l, nil
}

// blockLen is the number of original bytes in block i.
func (l *layout) blockLen(i int64) int64 { return min(l.blockSize, l.size-i*l.blockSize) }

func (l *layout) sums() *segment.Checksums {
	return &segment.Checksums{Blocks: append([]uint32(nil), l.crcs...), Whole: l.whole}
}

func (l *layout) compression() string {
	if l.codec == codecGzip {
		return CompressionGzip
	}
	return CompressionZstd
}

// trailer encodes the index and footer of an object whose frames (lens, in
// order) end at framesEnd.
func trailer(codec byte, framesEnd, size int64, whole uint32, lens []int64, crcs []uint32) []byte {
	idx := make([]byte, 8*len(lens))
	for i := range lens {
		binary.LittleEndian.PutUint32(idx[8*i:], uint32(lens[i]))
		binary.LittleEndian.PutUint32(idx[8*i+4:], crcs[i])
	}
	f := footer{codec: codec, blockSize: segment.BlockSize, size: size, whole: whole,
		blocks: int64(len(lens)), indexLen: int64(len(idx)), indexCRC: segment.CRC32C(idx)}
	var out []byte
	if codec == codecZstd {
		f.indexOff = framesEnd + zstdSkippableHdr
		out = binary.LittleEndian.AppendUint32(out, zstdSkippableMagic)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(idx)+footerLen))
		out = append(out, idx...)
		return append(out, f.marshal()...)
	}
	f.indexOff = framesEnd
	for len(idx) > 0 {
		n := min(len(idx), gzipChunkMax)
		out = appendGzipMember(out, idx[:n])
		idx = idx[n:]
	}
	return appendGzipMember(out, f.marshal())
}

// singleClose is what ends the data member of a formatSingle object after
// its frames: finalBlock, then gzip's CRC32 and ISIZE.
const singleClose = 5 + 8

// trailerSingle is trailer for a formatSingle gzip object: it first closes
// the data member (finalBlock, the IEEE CRC32 ieee and the length of all
// the original bytes), then the index members and the footer member follow
// as in version 1. framesEnd counts the member's header.
func trailerSingle(framesEnd, size int64, whole, ieee uint32, lens []int64, crcs []uint32) []byte {
	out := append([]byte(nil), finalBlock...)
	out = binary.LittleEndian.AppendUint32(out, ieee)
	out = binary.LittleEndian.AppendUint32(out, uint32(size))
	t := trailer(codecGzip, framesEnd+singleClose, size, whole, lens, crcs)
	// Mark the footer (the last member's payload) as formatSingle and
	// reseal its CRC.
	fb := t[len(t)-len(gzipEnd)-footerLen : len(t)-len(gzipEnd)]
	fb[8] = formatSingle
	binary.LittleEndian.PutUint32(fb[48:], segment.CRC32C(fb[:48]))
	return append(out, t...)
}

// appendGzipMember appends an empty gzip member whose FEXTRA carries data in
// one "SF" subfield.
func appendGzipMember(out, data []byte) []byte {
	out = append(out, gzipHeader...)
	out = binary.LittleEndian.AppendUint16(out, uint16(4+len(data)))
	out = append(out, 'S', 'F')
	out = binary.LittleEndian.AppendUint16(out, uint16(len(data)))
	out = append(out, data...)
	return append(out, gzipEnd...)
}

// unwrapGzipChunks concatenates the FEXTRA payloads of the empty members in
// b, which must be exactly such members, as appendGzipMember writes them.
func unwrapGzipChunks(b []byte) ([]byte, error) {
	var out []byte
	for len(b) > 0 {
		if len(b) < gzipOverhead || !bytes.Equal(b[:len(gzipHeader)], gzipHeader) || b[12] != 'S' || b[13] != 'F' {
			return nil, fmt.Errorf("%w: index member is malformed", errFormat)
		}
		xlen := int(binary.LittleEndian.Uint16(b[10:]))
		n := int(binary.LittleEndian.Uint16(b[14:]))
		if xlen != n+4 || len(b) < gzipOverhead+n || !bytes.Equal(b[16+n:26+n], gzipEnd) {
			return nil, fmt.Errorf("%w: index member is malformed", errFormat)
		}
		out = append(out, b[16:16+n]...)
		b = b[gzipOverhead+n:]
	}
	return out, nil
}
