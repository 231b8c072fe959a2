package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// BlockSize is the unit of checksumming, caching and ranged fetching: every
// segment's bytes are cut into BlockSize blocks (the last may be short) and a
// CRC32C is recorded for each when the segment is written.
const BlockSize = 1 << 20

// castagnoli is the CRC32C table; the stdlib uses SSE4.2/ARM CRC instructions
// for it, so checksumming runs at memory speed.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Tier says where a segment's bytes live.
type Tier uint8

const (
	TierHot  Tier = 1 // the local bbolt file
	TierCold Tier = 2 // the S3 bucket
)

func (t Tier) String() string {
	switch t {
	case TierHot:
		return "hot"
	case TierCold:
		return "cold"
	}
	return "unknown"
}

// Info describes one stored version of a segment.
type Info struct {
	ID      ID
	Size    int64
	ModTime time.Time // user-visible mtime; settable (touch -d, cp -p)
	Tier    Tier
	// Version identifies these exact bytes in their tier: a generation number
	// in the hot tier, an ETag in S3. Empty when the tier cannot say.
	Version string
	// Sums holds the block checksums recorded at write time; nil when the
	// segment was written by another program and carries none.
	Sums *Checksums
	// WrittenAt is when this store wrote the version (not the settable mtime);
	// the archival policy ages segments by it. Zero when unknown.
	WrittenAt time.Time
	// StoredSize and Compression describe the representation in the tier when
	// it differs from the plain bytes (compressed cold objects).
	StoredSize  int64
	Compression string
	// Unresolved is set by a listing that could not tell the true size and
	// mtime (a Scribe Ledger object with a sidecar: its size may be the
	// compressed one); Stat can.
	Unresolved bool
}

// Checksums are the CRC32C of each BlockSize block of a segment, in order.
type Checksums struct {
	Blocks []uint32
	// Whole is the CRC32C of all the bytes.
	Whole uint32
}

// ErrChecksum is returned (wrapped) when bytes do not match their recorded
// checksum. Such bytes never reach a reader.
var ErrChecksum = errors.New("checksum mismatch")

// Equal reports whether two checksum sets describe the same bytes.
func (c *Checksums) Equal(o *Checksums) bool {
	if c == nil || o == nil {
		return c == o
	}
	if c.Whole != o.Whole || len(c.Blocks) != len(o.Blocks) {
		return false
	}
	for i := range c.Blocks {
		if c.Blocks[i] != o.Blocks[i] {
			return false
		}
	}
	return true
}

// String renders the whole-segment checksum as it is shown to users.
func (c *Checksums) String() string {
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("crc32c:%08x", c.Whole)
}

// VerifyBlock checks one whole block (index i) against the recorded sum.
// Checksums with no block sums (only a whole-object sum, as S3 metadata
// sometimes carries) cannot check a block and accept it.
func (c *Checksums) VerifyBlock(i int64, b []byte) error {
	if c == nil || len(c.Blocks) == 0 {
		return nil
	}
	if i < 0 || i >= int64(len(c.Blocks)) {
		return fmt.Errorf("%w: block %d out of range (%d blocks)", ErrChecksum, i, len(c.Blocks))
	}
	if got := crc32.Checksum(b, castagnoli); got != c.Blocks[i] {
		return fmt.Errorf("%w at offset %d: crc32c %08x, recorded %08x", ErrChecksum, i*BlockSize, got, c.Blocks[i])
	}
	return nil
}

// MarshalBinary encodes the checksums compactly for the index.
func (c *Checksums) MarshalBinary() ([]byte, error) {
	b := make([]byte, 4+4*len(c.Blocks))
	binary.BigEndian.PutUint32(b, c.Whole)
	for i, s := range c.Blocks {
		binary.BigEndian.PutUint32(b[4+4*i:], s)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary produced.
func (c *Checksums) UnmarshalBinary(b []byte) error {
	if len(b) < 4 || len(b)%4 != 0 {
		return fmt.Errorf("checksums: bad encoding of %d bytes", len(b))
	}
	c.Whole = binary.BigEndian.Uint32(b)
	c.Blocks = make([]uint32, (len(b)-4)/4)
	for i := range c.Blocks {
		c.Blocks[i] = binary.BigEndian.Uint32(b[4+4*i:])
	}
	return nil
}

// Summer computes Checksums over a stream written to it in any chunking.
// The zero value is ready to use.
type Summer struct {
	blocks []uint32
	whole  uint32
	cur    uint32
	inBlk  int64
	n      int64
}

// Write never fails.
func (s *Summer) Write(p []byte) (int, error) {
	n := len(p)
	s.whole = crc32.Update(s.whole, castagnoli, p)
	for len(p) > 0 {
		room := BlockSize - s.inBlk
		take := int64(len(p))
		if take > room {
			take = room
		}
		s.cur = crc32.Update(s.cur, castagnoli, p[:take])
		s.inBlk += take
		p = p[take:]
		if s.inBlk == BlockSize {
			s.blocks = append(s.blocks, s.cur)
			s.cur, s.inBlk = 0, 0
		}
	}
	s.n += int64(n)
	return n, nil
}

// Size is the number of bytes written so far.
func (s *Summer) Size() int64 { return s.n }

// Sums returns the checksums of everything written so far.
func (s *Summer) Sums() *Checksums {
	blocks := append([]uint32(nil), s.blocks...)
	if s.inBlk > 0 {
		blocks = append(blocks, s.cur)
	}
	return &Checksums{Blocks: blocks, Whole: s.whole}
}

// Sum is a convenience for checksumming a byte slice.
func Sum(b []byte) *Checksums {
	var s Summer
	s.Write(b)
	return s.Sums()
}

// CRC32C returns the CRC32C of b (used for S3 part checksums).
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
