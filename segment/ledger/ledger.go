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
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
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

// CheckedEncodedLen is EncodedLen for values from an untrusted sidecar:
// an error, never a wrapped-around or negative length, when they describe
// no segment a file could hold (more than an int64 of bytes).
func CheckedEncodedLen(size, n uint64) (int64, error) {
	const limit = math.MaxInt64
	if n > (limit-32)/16 || size > limit-32-16*n {
		return 0, fmt.Errorf("%w: original_size %d and entry_count %d describe more than %d bytes", ErrFormat, size, n, uint64(limit))
	}
	return int64(size + 32 + 16*n), nil
}

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
// with keys and values quoted as strconv.Quote does (printable UTF-8 as is,
// the rest as Go escapes), so any bytes show on a terminal.
func Dump(s *Segment) string {
	var w strings.Builder
	fmt.Fprintf(&w, "segment_id: %d\ntimestamp: %d\nentries: %d\nsize: %d\n", s.ID, s.Timestamp, len(s.Entries), s.Size)
	for _, e := range s.Entries {
		quote(&w, e.Key)
		w.WriteString(" = ")
		quote(&w, e.Value)
		w.WriteByte('\n')
	}
	return w.String()
}

// DumpStream decodes the segment of length bytes that r yields and writes
// the same text as Dump, entry by entry as it reads, with the checks
// Decode makes, in memory bounded by its buffers whatever the segment's
// size or a length field claims. The header's size line comes from length
// and the entry count; it is checked against the size field and the entries
// once they are read. On an error the output so far is the dump of the
// entries before it, and the error says where the bytes stopped being a
// segment. r must end after length bytes: it is read to its end, so a
// reader that checks itself at its end (a checksum) does.
func DumpStream(w io.Writer, r io.Reader, length int64) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	d := &streamDecoder{r: bufio.NewReaderSize(r, 64<<10), left: uint64(max(length, 0))}
	id, ts := d.u64("segment_id"), d.u64("timestamp")
	n := d.u64("entry count")
	if d.err == nil && (d.left < 8 || n > (d.left-8)/16) {
		d.fail("entry count %d exceeds what %d remaining bytes can hold", n, d.left)
	}
	if d.err != nil {
		return d.err
	}
	size := d.left - 8 - 16*n // what the size field must say
	fmt.Fprintf(bw, "segment_id: %d\ntimestamp: %d\nentries: %d\nsize: %d\n", id, ts, n, size)
	var sum uint64
	fr := bufio.NewReaderSize(nil, 64<<10) // reused for every field
	for i := uint64(0); i < n && d.err == nil; i++ {
		sum += d.field(bw, fr, "entry %d key", i)
		bw.WriteString(" = ")
		sum += d.field(bw, fr, "entry %d value", i)
		bw.WriteByte('\n')
	}
	got := d.u64("size")
	switch {
	case d.err != nil:
	case d.left != 0:
		d.fail("%d trailing bytes after the size field", d.left)
	case got != sum:
		d.fail("size field %d, but keys and values add up to %d", got, sum)
	default:
		// The source must end where length says.
		var one [1]byte
		if m, err := io.ReadFull(d.r, one[:]); m > 0 {
			d.fail("trailing bytes after the size field")
		} else if err != io.EOF {
			d.err = err
		}
	}
	if err := bw.Flush(); err != nil && d.err == nil {
		return err
	}
	return d.err
}

// streamDecoder reads a segment's fields from r, of which left bytes
// belong to the segment.
type streamDecoder struct {
	r    *bufio.Reader
	left uint64
	off  uint64
	err  error
}

func (d *streamDecoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: at byte %d: %s", ErrFormat, d.off, fmt.Sprintf(format, a...))
	}
}

func (d *streamDecoder) read(p []byte, what string) bool {
	if _, err := io.ReadFull(d.r, p); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			d.fail("truncated %s", what)
		} else if d.err == nil {
			d.err = err
		}
		return false
	}
	d.off += uint64(len(p))
	d.left -= uint64(len(p))
	return true
}

func (d *streamDecoder) u64(what string) uint64 {
	if d.err != nil {
		return 0
	}
	if d.left < 8 {
		d.fail("truncated %s", what)
		return 0
	}
	var b [8]byte
	if !d.read(b[:], what) {
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}

// field streams one length-prefixed key or value to w, quoted, and
// returns its length.
func (d *streamDecoder) field(w *bufio.Writer, fr *bufio.Reader, format string, i uint64) uint64 {
	if d.err != nil {
		return 0
	}
	what := fmt.Sprintf(format, i)
	n := d.u64(what + " length")
	if d.err != nil {
		return 0
	}
	if n > d.left {
		d.fail("%s length %d exceeds the %d bytes left", what, n, d.left)
		return 0
	}
	lr := io.LimitedReader{R: d.r, N: int64(n)}
	fr.Reset(&lr)
	w.WriteByte('"')
	for {
		p, err := fr.Peek(fr.Size())
		end := err != nil // p holds the rest of the field
		if end && err != io.EOF && err != bufio.ErrBufferFull {
			d.err = err
			return 0
		}
		if len(p) == 0 {
			break
		}
		used := quoteSome(w, p, end)
		fr.Discard(used)
	}
	w.WriteByte('"')
	if lr.N > 0 {
		d.off += n - uint64(lr.N)
		d.fail("truncated %s", what)
		return 0
	}
	d.off += n
	d.left -= n
	return n
}

// quoteSome writes a prefix of p as it appears inside strconv.Quote's
// result and returns its length: all of p when end says nothing follows,
// else up to a rune that may continue in the bytes after p.
func quoteSome(w quoteWriter, p []byte, end bool) int {
	i := 0
	for i < len(p) {
		// Runs of printable ASCII go out as they are.
		j := i
		for j < len(p) && p[j] >= 0x20 && p[j] < 0x7f && p[j] != '"' && p[j] != '\\' {
			j++
		}
		if j > i {
			w.Write(p[i:j])
			i = j
			continue
		}
		if !end && !utf8.FullRune(p[i:]) {
			break
		}
		r, width := utf8.DecodeRune(p[i:])
		quoteRune(w, r, width, p[i])
		i += width
	}
	return i
}

// quoteWriter is what quoteRune writes to.
type quoteWriter interface {
	io.Writer
	io.ByteWriter
}

const hexDigits = "0123456789abcdef"

// quoteRune writes one rune as it appears inside strconv.Quote's result:
// an invalid byte b (r == utf8.RuneError, width 1) as \xNN.
func quoteRune(w quoteWriter, r rune, width int, b byte) {
	switch {
	case r == utf8.RuneError && width == 1:
		w.Write([]byte{'\\', 'x', hexDigits[b>>4], hexDigits[b&15]})
	case r == '"':
		w.Write([]byte{'\\', '"'})
	case r == '\'':
		w.WriteByte('\'')
	default:
		var scratch [16]byte
		q := strconv.AppendQuoteRune(scratch[:0], r)
		w.Write(q[1 : len(q)-1])
	}
}

// quote writes b as strconv.Quote does.
func quote(w quoteWriter, b []byte) {
	w.WriteByte('"')
	for len(b) > 0 {
		r, width := utf8.DecodeRune(b)
		quoteRune(w, r, width, b[0])
		b = b[width:]
	}
	w.WriteByte('"')
}
