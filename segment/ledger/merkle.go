package ledger

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// Root is a Merkle root as Scribe Ledger computes it (src/crypto/mod.rs,
// MerkleTree): SHA-256 over the segment's pairs sorted by key, byte-wise;
// a leaf is H("leaf:" ‖ key ‖ ":" ‖ value), an internal node
// H("internal:" ‖ left ‖ ":" ‖ right); each level pairs nodes two by two and
// pairs an odd last node with itself; a single pair's root is its leaf. A
// segment without pairs has no root. Sidecars carry it as a JSON array of
// 32 numbers, which is how encoding/json writes a [32]byte.
type Root [32]byte

func (r Root) String() string { return fmt.Sprintf("%x", r[:]) }

// LeafHash is the hash of one pair.
func LeafHash(key, value []byte) Root {
	h := sha256.New()
	h.Write([]byte("leaf:"))
	h.Write(key)
	h.Write([]byte(":"))
	h.Write(value)
	var r Root
	h.Sum(r[:0])
	return r
}

func internalHash(l, r Root) Root {
	h := sha256.New()
	h.Write([]byte("internal:"))
	h.Write(l[:])
	h.Write([]byte(":"))
	h.Write(r[:])
	var out Root
	h.Sum(out[:0])
	return out
}

// rootOf folds leaves, already in key order, to the root.
func rootOf(level []Root) (Root, bool) {
	if len(level) == 0 {
		return Root{}, false
	}
	for len(level) > 1 {
		next := make([]Root, 0, (len(level)+1)/2)
		for i := 0; i < len(level); i += 2 {
			r := level[i]
			if i+1 < len(level) {
				r = level[i+1]
			}
			next = append(next, internalHash(level[i], r))
		}
		level = next
	}
	return level[0], true
}

// MerkleRoot is the root of entries in any order; ok is false when there are
// none.
func MerkleRoot(entries []Entry) (root Root, ok bool) {
	sorted := append([]Entry(nil), entries...)
	sort.SliceStable(sorted, func(i, j int) bool { return bytes.Compare(sorted[i].Key, sorted[j].Key) < 0 })
	leaves := make([]Root, len(sorted))
	for i, e := range sorted {
		leaves[i] = LeafHash(e.Key, e.Value)
	}
	return rootOf(leaves)
}

// Summary is what a sidecar says of a segment's content.
type Summary struct {
	ID        uint64
	Timestamp uint64
	Entries   uint64 // entry_count
	Size      uint64 // original_size: the sum of key and value lengths
	Root      *Root  // nil for a segment without entries
}

// MaxSummaryMemory bounds what Summarize holds to sort the entries: their
// keys plus summaryEntryCost bytes per entry. A segment that needs more is
// not summarized (it gets no sidecar): hostile bytes written through the
// mount (millions of empty entries) cannot make archival run out of memory.
var MaxSummaryMemory uint64 = 256 << 20

// ErrTooLarge is returned (wrapped, with ErrFormat) by Summarize for a
// segment beyond MaxSummaryMemory.
var ErrTooLarge = errors.New("segment too large to summarize")

// summaryEntryCost is what Summarize holds per entry besides its key: the
// key's slice header and the leaf hash.
const summaryEntryCost = 24 + 32

// Summarize decodes the segment r yields up to its EOF, with the checks
// Decode makes, holding only its keys and one hash per entry, and returns
// its Summary. Bytes that a node would not read back as the same segment
// are refused: not a segment, trailing bytes, or a key that occurs twice
// (upstream decodes data into a map, which would drop one of them).
func Summarize(r io.Reader) (*Summary, error) {
	d := &streamDecoder{r: bufio.NewReaderSize(r, 64<<10), left: ^uint64(0)}
	s := &Summary{ID: d.u64("segment_id"), Timestamp: d.u64("timestamp")}
	s.Entries = d.u64("entry count")
	type leaf struct {
		key  []byte
		hash Root
	}
	var (
		leaves  []leaf
		keys    uint64
		sum     uint64
		lenBuf  [8]byte
		scratch = make([]byte, 64<<10)
	)
	for i := uint64(0); i < s.Entries && d.err == nil; i++ {
		kn := d.u64(fmt.Sprintf("entry %d key length", i))
		if d.err != nil {
			break
		}
		if keys += summaryEntryCost; kn > MaxSummaryMemory || keys+kn > MaxSummaryMemory {
			d.err = fmt.Errorf("%w: %w: entries need more than %d bytes to summarize", ErrFormat, ErrTooLarge, MaxSummaryMemory)
			break
		}
		keys += kn
		var key bytes.Buffer
		if m, err := io.CopyN(&key, d.r, int64(kn)); err != nil {
			d.off += uint64(m)
			d.fail("truncated entry %d key", i)
			break
		}
		d.off += kn
		h := sha256.New()
		h.Write([]byte("leaf:"))
		h.Write(key.Bytes())
		h.Write([]byte(":"))
		vn := d.u64(fmt.Sprintf("entry %d value length", i))
		if d.err != nil {
			break
		}
		if m, err := io.CopyBuffer(struct{ io.Writer }{h}, io.LimitReader(d.r, int64(min(vn, 1<<62))), scratch); err != nil || uint64(m) != vn {
			d.off += uint64(m)
			if err != nil {
				d.err = err
			}
			d.fail("truncated entry %d value", i)
			break
		}
		d.off += vn
		var lh Root
		h.Sum(lh[:0])
		leaves = append(leaves, leaf{key.Bytes(), lh})
		sum += kn + vn
	}
	s.Size = d.u64("size")
	if d.err == nil && s.Size != sum {
		d.fail("size field %d, but keys and values add up to %d", s.Size, sum)
	}
	if d.err == nil {
		if n, err := io.ReadFull(d.r, lenBuf[:1]); n > 0 {
			d.fail("trailing bytes after the size field")
		} else if err != io.EOF {
			d.err = err // the source's own check at its end (gzip's CRC)
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	sort.SliceStable(leaves, func(i, j int) bool { return bytes.Compare(leaves[i].key, leaves[j].key) < 0 })
	hashes := make([]Root, len(leaves))
	for i, l := range leaves {
		if i > 0 && bytes.Equal(leaves[i-1].key, l.key) {
			return nil, fmt.Errorf("%w: key %q occurs more than once", ErrFormat, l.key)
		}
		hashes[i] = l.hash
	}
	if root, ok := rootOf(hashes); ok {
		s.Root = &root
	}
	return s, nil
}

// Sidecar is the segment-<hex>.meta.json a Scribe Ledger node writes beside
// an archived segment (upstream SegmentMetadata) plus merkle_root, which
// newer nodes add. Every field but merkle_root is required by a node.
type Sidecar struct {
	SegmentID      uint64 `json:"segment_id"`
	CreatedAt      uint64 `json:"created_at"`
	ArchivedAt     uint64 `json:"archived_at"`
	OriginalSize   uint64 `json:"original_size"`
	CompressedSize uint64 `json:"compressed_size"`
	IsCompressed   bool   `json:"is_compressed"`
	EntryCount     uint64 `json:"entry_count"`
	MerkleRoot     *Root  `json:"merkle_root,omitempty"`
}

// NewSidecar describes segment id, summarized as s, stored in an object of
// stored bytes (compressed says whether that object is gzip), archived at
// archivedAt (Unix seconds).
func NewSidecar(id uint64, s *Summary, stored int64, compressed bool, archivedAt int64) Sidecar {
	return Sidecar{
		SegmentID: id, CreatedAt: s.Timestamp, ArchivedAt: uint64(max(archivedAt, 0)),
		OriginalSize: s.Size, CompressedSize: uint64(max(stored, 0)), IsCompressed: compressed,
		EntryCount: s.Entries, MerkleRoot: s.Root,
	}
}

// Marshal is the sidecar's JSON.
func (sc Sidecar) Marshal() []byte {
	b, _ := json.Marshal(sc) // cannot fail: fixed types
	return b
}

// ParseRoot checks a sidecar's merkle_root, which must be a JSON array of 32
// numbers from 0 to 255.
func ParseRoot(raw json.RawMessage) (Root, error) {
	var nums []int
	if err := json.Unmarshal(raw, &nums); err != nil || len(nums) != len(Root{}) {
		return Root{}, fmt.Errorf("merkle_root is not an array of 32 byte values")
	}
	var r Root
	for i, n := range nums {
		if n < 0 || n > 255 {
			return Root{}, fmt.Errorf("merkle_root is not an array of 32 byte values")
		}
		r[i] = byte(n)
	}
	return r, nil
}

// Encode is the bincode encoding of a segment: the inverse of Decode, for
// tests and tools. Entries are written in the order given.
func Encode(s *Segment) []byte {
	var out []byte
	out = binary.LittleEndian.AppendUint64(out, s.ID)
	out = binary.LittleEndian.AppendUint64(out, s.Timestamp)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(s.Entries)))
	var size uint64
	for _, e := range s.Entries {
		out = binary.LittleEndian.AppendUint64(out, uint64(len(e.Key)))
		out = append(out, e.Key...)
		out = binary.LittleEndian.AppendUint64(out, uint64(len(e.Value)))
		out = append(out, e.Value...)
		size += uint64(len(e.Key) + len(e.Value))
	}
	return binary.LittleEndian.AppendUint64(out, size)
}

// RootCheck summarizes, in a goroutine, the bytes written to it, so a
// reader can be checked as it streams (io.TeeReader). Writes never fail.
type RootCheck struct {
	pw   *io.PipeWriter
	done chan struct{}
	sum  *Summary
	err  error
}

// NewRootCheck starts a RootCheck; call Close exactly once.
func NewRootCheck() *RootCheck {
	pr, pw := io.Pipe()
	c := &RootCheck{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.sum, c.err = Summarize(pr)
		io.Copy(io.Discard, pr) // a failed summary still takes every write
	}()
	return c
}

func (c *RootCheck) Write(p []byte) (int, error) {
	c.pw.Write(p)
	return len(p), nil
}

// Close ends the input and returns the summary of all that was written.
func (c *RootCheck) Close() (*Summary, error) {
	c.pw.Close()
	<-c.done
	return c.sum, c.err
}

// Mismatch says how a segment's bytes disagree with the Merkle root
// recorded for them; nil when they agree, or when the segment is too large
// to summarize (ErrTooLarge: not checked).
func Mismatch(id uint64, want []byte, s *Summary, serr error) error {
	switch {
	case errors.Is(serr, ErrTooLarge):
		return nil
	case serr != nil:
		return fmt.Errorf("segment %d: the bytes are not a Scribe Ledger segment (%v), sidecar says merkle root %x", id, serr, want)
	case s.Root == nil:
		return fmt.Errorf("segment %d: no entries, so no merkle root, sidecar says %x", id, want)
	case !bytes.Equal(s.Root[:], want):
		return fmt.Errorf("segment %d: merkle root %x, sidecar says %x", id, s.Root[:], want)
	}
	return nil
}
