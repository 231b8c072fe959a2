// Package ledger decodes segments in Scribe Ledger's encoding: bincode v1,
// little-endian, fixed-width integers, of
//
//	Segment { segment_id: u64, timestamp: u64, data: map<bytes, bytes>, size: u64 }
//
// that is: u64 id, u64 timestamp, u64 entry count, then per entry a u64 key
// length, the key, a u64 value length, the value; then u64 size (the sum of
// key and value lengths, not the encoded length).
//
// It only reads; it never trusts a length before checking it against the
// bytes that remain, so hostile input cannot make it allocate.
package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Segment is a decoded Scribe Ledger segment.
type Segment struct {
	ID        uint64
	Timestamp uint64
	Entries   []Entry
	Size      uint64 // as recorded: the sum of key and value lengths
}

// Entry is one key/value pair.
type Entry struct{ Key, Value []byte }

// ErrFormat is returned (wrapped) for bytes that are not such a segment.
var ErrFormat = errors.New("not a Scribe Ledger segment")

// EncodedLen is the length of the encoding of a segment whose keys and
// values add up to size bytes over n entries: what a sidecar's original_size
// and entry_count imply.
func EncodedLen(size, n uint64) uint64 { return size + 32 + 16*n }

// Decode parses b, which must be exactly one encoded segment.
func Decode(b []byte) (*Segment, error) {
	d := decoder{b: b}
	s := &Segment{ID: d.u64("segment_id"), Timestamp: d.u64("timestamp")}
	n := d.u64("entry count")
	if d.err == nil && n > uint64(len(d.b)-d.off)/16 {
		d.fail("entry count %d exceeds what %d remaining bytes can hold", n, len(d.b)-d.off)
	}
	var sum uint64
	for i := uint64(0); i < n && d.err == nil; i++ {
		k := d.bytes(fmt.Sprintf("entry %d key", i))
		v := d.bytes(fmt.Sprintf("entry %d value", i))
		s.Entries = append(s.Entries, Entry{Key: k, Value: v})
		sum += uint64(len(k) + len(v))
	}
	s.Size = d.u64("size")
	if d.err != nil {
		return nil, d.err
	}
	if d.off != len(d.b) {
		return nil, fmt.Errorf("%w: %d trailing bytes after the size field", ErrFormat, len(d.b)-d.off)
	}
	if s.Size != sum {
		return nil, fmt.Errorf("%w: size field %d, but keys and values add up to %d", ErrFormat, s.Size, sum)
	}
	return s, nil
}

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: at byte %d: %s", ErrFormat, d.off, fmt.Sprintf(format, a...))
	}
}

func (d *decoder) u64(what string) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b)-d.off < 8 {
		d.fail("truncated %s", what)
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

func (d *decoder) bytes(what string) []byte {
	n := d.u64(what + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail("%s length %d exceeds the %d bytes left", what, n, len(d.b)-d.off)
		return nil
	}
	v := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return v
}

// Dump renders a segment readably: a header line, then one line per entry
// with keys and values escaped (printable UTF-8 as is, the rest as Go
// escapes), so any bytes show on a terminal.
func Dump(s *Segment) string {
	var w strings.Builder
	fmt.Fprintf(&w, "segment_id: %d\ntimestamp: %d\nentries: %d\nsize: %d\n", s.ID, s.Timestamp, len(s.Entries), s.Size)
	for _, e := range s.Entries {
		fmt.Fprintf(&w, "%s = %s\n", escape(e.Key), escape(e.Value))
	}
	return w.String()
}

func escape(b []byte) string {
	if utf8.Valid(b) {
		q := strconv.Quote(string(b))
		return q
	}
	var w strings.Builder
	w.WriteByte('"')
	for _, c := range b {
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			w.WriteByte(c)
		} else {
			fmt.Fprintf(&w, "\\x%02x", c)
		}
	}
	w.WriteByte('"')
	return w.String()
}
