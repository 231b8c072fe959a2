package ledger

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// fixtures is a copy of shared/fixtures/scribe-ledger, kept in the repo so
// the tests are hermetic.
const fixtures = "../../testdata/scribe-ledger"

func encode(s Segment) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint64(b, s.ID)
	b = binary.LittleEndian.AppendUint64(b, s.Timestamp)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s.Entries)))
	for _, e := range s.Entries {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(e.Key)))
		b = append(b, e.Key...)
		b = binary.LittleEndian.AppendUint64(b, uint64(len(e.Value)))
		b = append(b, e.Value...)
	}
	return binary.LittleEndian.AppendUint64(b, s.Size)
}

func TestRoundTrip(t *testing.T) {
	s := Segment{ID: 42, Timestamp: 1761300042, Entries: []Entry{{[]byte("k1"), []byte("v1")}, {[]byte{0xff, 0}, []byte("é")}}, Size: 8}
	b := encode(s)
	if uint64(len(b)) != EncodedLen(s.Size, 2) {
		t.Fatalf("encoded %d bytes, EncodedLen says %d", len(b), EncodedLen(s.Size, 2))
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != 42 || got.Timestamp != 1761300042 || len(got.Entries) != 2 || !bytes.Equal(got.Entries[1].Key, []byte{0xff, 0}) {
		t.Fatalf("decoded %+v", got)
	}
	if d := Dump(got); d != "segment_id: 42\ntimestamp: 1761300042\nentries: 2\nsize: 8\n\"k1\" = \"v1\"\n\"\\xff\\x00\" = \"é\"\n" {
		t.Fatalf("dump:\n%s", d)
	}
}

func TestRejects(t *testing.T) {
	good := encode(Segment{ID: 1, Entries: []Entry{{[]byte("a"), []byte("b")}}, Size: 2})
	cases := map[string][]byte{
		"empty":          nil,
		"text":           []byte("hello, this is not a segment at all"),
		"truncated":      good[:len(good)-3],
		"trailing":       append(append([]byte(nil), good...), 0),
		"huge count":     append(binary.LittleEndian.AppendUint64(make([]byte, 16), 1<<62), good[24:]...),
		"wrong size sum": encode(Segment{ID: 1, Entries: []Entry{{[]byte("a"), []byte("b")}}, Size: 3}),
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err %v, want ErrFormat", name, err)
		}
	}
}

// TestFixtures decodes every upstream fixture and checks the sidecar
// arithmetic: encoded length = original_size + 32 + 16 × entry_count.
func TestFixtures(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(fixtures, "expected.json"))
	if err != nil {
		t.Fatalf("fixtures: %v", err)
	}
	var expected map[string]struct {
		Compressed bool `json:"compressed"`
		DecodedLen int  `json:"decoded_len"`
		Entries    int  `json:"entries"`
	}
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatal(err)
	}
	for idStr, want := range expected {
		id, _ := strconv.ParseUint(idStr, 10, 64)
		base := filepath.Join(fixtures, "segments", "segment-"+pad16(id))
		obj, err := os.ReadFile(base + ".bin")
		if err != nil {
			t.Fatal(err)
		}
		if want.Compressed {
			zr, err := gzip.NewReader(bytes.NewReader(obj))
			if err != nil {
				t.Fatalf("%d: %v", id, err)
			}
			obj, err = io.ReadAll(zr)
			if err != nil {
				t.Fatalf("%d: %v", id, err)
			}
		}
		seg, err := Decode(obj)
		if err != nil {
			t.Fatalf("fixture %d: %v", id, err)
		}
		if seg.ID != id || len(seg.Entries) != want.Entries || len(obj) != want.DecodedLen {
			t.Fatalf("fixture %d: id %d, %d entries, %d bytes; want %d entries, %d bytes", id, seg.ID, len(seg.Entries), len(obj), want.Entries, want.DecodedLen)
		}
		var meta struct {
			OriginalSize uint64 `json:"original_size"`
			EntryCount   uint64 `json:"entry_count"`
		}
		mb, _ := os.ReadFile(base + ".meta.json")
		json.Unmarshal(mb, &meta)
		if EncodedLen(meta.OriginalSize, meta.EntryCount) != uint64(want.DecodedLen) {
			t.Fatalf("fixture %d: sidecar implies %d bytes, decoded %d", id, EncodedLen(meta.OriginalSize, meta.EntryCount), want.DecodedLen)
		}
	}
}

func pad16(id uint64) string {
	s := strconv.FormatUint(id, 16)
	for len(s) < 16 {
		s = "0" + s
	}
	return s
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(Segment{ID: 1, Entries: []Entry{{[]byte("a"), []byte("b")}}, Size: 2}))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error not ErrFormat: %v", err)
			}
			return
		}
		if !bytes.Equal(encode(*s), b) {
			t.Fatal("decoded segment does not re-encode to its input")
		}
		Dump(s)
	})
}

// TestDumpStreamMatchesDump: the streaming dump prints what Dump prints
// for every fixture and for segments with any bytes, and refuses what
// Decode refuses.
func TestDumpStreamMatchesDump(t *testing.T) {
	var segs [][]byte
	for _, e := range []Segment{
		{ID: 42, Timestamp: 7, Entries: []Entry{{[]byte("k1"), []byte("v1")}, {[]byte{0xff, 0}, []byte("é\"'\\\n\t\x7f")}}, Size: 14},
		{ID: 1},
		{ID: 2, Entries: []Entry{{nil, nil}, {[]byte("\xe2\x82"), []byte("a\xe2\x82\xacb\xf0\x9f\x98")}}, Size: 10},
	} {
		segs = append(segs, encode(e))
	}
	paths, _ := filepath.Glob(filepath.Join(fixtures, "segments", "*.bin"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			if b, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Decode(b); err == nil {
			segs = append(segs, b)
		}
	}
	if len(segs) < 4 {
		t.Fatalf("only %d segments to compare", len(segs))
	}
	for i, b := range segs {
		s, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := DumpStream(&out, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		if want := Dump(s); out.String() != want {
			t.Fatalf("segment %d: stream dump\n%q\nwant\n%q", i, out.String(), want)
		}
	}
	good := encode(Segment{ID: 1, Entries: []Entry{{[]byte("a"), []byte("b")}}, Size: 2})
	for name, tc := range map[string]struct {
		b      []byte
		length int64
	}{
		"empty":             {nil, 0},
		"text":              {[]byte("hello, this is not a segment at all"), 35},
		"truncated":         {good[:len(good)-3], int64(len(good) - 3)},
		"shorter than said": {good[:len(good)-3], int64(len(good))},
		"longer than said":  {good, int64(len(good) - 1)},
		"trailing":          {append(append([]byte(nil), good...), 0), int64(len(good) + 1)},
		"huge count":        {append(binary.LittleEndian.AppendUint64(make([]byte, 16), 1<<62), good[24:]...), int64(len(good))},
		"wrong size sum":    {encode(Segment{ID: 1, Entries: []Entry{{[]byte("a"), []byte("b")}}, Size: 3}), int64(len(good))},
		"huge value":        {append(binary.LittleEndian.AppendUint64(good[:32:32], 1<<40), 'x'), int64(len(good))},
	} {
		if err := DumpStream(io.Discard, bytes.NewReader(tc.b), tc.length); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err %v, want ErrFormat", name, err)
		}
	}
}

// ledgerSource yields, without holding it, the encoding of a segment with
// one entry whose value is n bytes of 'v'.
func ledgerSource(n int64) (io.Reader, int64) {
	var head []byte
	head = binary.LittleEndian.AppendUint64(head, 9)
	head = binary.LittleEndian.AppendUint64(head, 1)
	head = binary.LittleEndian.AppendUint64(head, 1)
	head = binary.LittleEndian.AppendUint64(head, 1)
	head = append(head, 'k')
	head = binary.LittleEndian.AppendUint64(head, uint64(n))
	tail := binary.LittleEndian.AppendUint64(nil, uint64(n+1))
	value := io.LimitReader(repeatReader('v'), n)
	return io.MultiReader(bytes.NewReader(head), value, bytes.NewReader(tail)), int64(len(head)) + n + 8
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// TestDumpStreamBoundedMemory: a 256 MiB value is printed in bounded
// memory.
func TestDumpStreamBoundedMemory(t *testing.T) {
	r, length := ledgerSource(256 << 20)
	var out countingWriter
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	if err := DumpStream(&out, r, length); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&m1)
	if want := int64(len("segment_id: 9\ntimestamp: 1\nentries: 1\nsize: 268435457\n\"k\" = \"\"\n") + 256<<20); out.n != want {
		t.Fatalf("printed %d bytes, want %d", out.n, want)
	}
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 1<<20 {
		t.Fatalf("dumping 256 MiB allocated %d KiB", alloc>>10)
	}
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// TestQuoteIsStrconvQuote: keys and values print exactly as strconv.Quote
// prints them, for any bytes.
func TestQuoteIsStrconvQuote(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	alphabet := []byte("ab\"'\\\n\x00\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xff\xed\xa0\x80")
	for range 5000 {
		b := make([]byte, rng.Intn(12))
		for i := range b {
			if rng.Intn(3) == 0 {
				b[i] = byte(rng.Intn(256))
			} else {
				b[i] = alphabet[rng.Intn(len(alphabet))]
			}
		}
		var sb strings.Builder
		quote(&sb, b)
		if want := strconv.Quote(string(b)); sb.String() != want {
			t.Fatalf("%q: quote gives %s, strconv.Quote %s", b, sb.String(), want)
		}
		var bw bytes.Buffer
		w := bufio.NewWriter(&bw)
		for cut := 0; cut <= len(b); cut++ { // fed in two pieces, cut anywhere
			bw.Reset()
			w.Reset(&bw)
			w.WriteByte('"')
			used := quoteSome(w, b[:cut], false)
			quoteSome(w, b[used:], true)
			w.WriteByte('"')
			w.Flush()
			if bw.String() != strconv.Quote(string(b)) {
				t.Fatalf("%q cut at %d: %s, want %s", b, cut, bw.String(), strconv.Quote(string(b)))
			}
		}
	}
}
