package ledger

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
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
