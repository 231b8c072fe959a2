package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// h is SHA-256 of the concatenation of parts, spelled out so the vectors
// below follow upstream's algorithm by hand rather than through the code
// under test.
func h(parts ...[]byte) [32]byte { return sha256.Sum256(bytes.Join(parts, nil)) }

func leaf(k, v string) [32]byte { return h([]byte("leaf:"), []byte(k), []byte(":"), []byte(v)) }

func node(l, r [32]byte) [32]byte { return h([]byte("internal:"), l[:], []byte(":"), r[:]) }

func TestMerkleRootVectors(t *testing.T) {
	a, b, c, d, e := leaf("a", "1"), leaf("b", "2"), leaf("c", "3"), leaf("d", "4"), leaf("e", "5")
	cases := []struct {
		name  string
		pairs []string // k=v, in the order given
		want  [32]byte
	}{
		{"one pair is its leaf", []string{"a=1"}, a},
		{"two", []string{"a=1", "b=2"}, node(a, b)},
		{"three: odd node paired with itself", []string{"a=1", "b=2", "c=3"}, node(node(a, b), node(c, c))},
		{"four", []string{"a=1", "b=2", "c=3", "d=4"}, node(node(a, b), node(c, d))},
		{"five", []string{"a=1", "b=2", "c=3", "d=4", "e=5"},
			node(node(node(a, b), node(c, d)), node(node(e, e), node(e, e)))},
		{"unsorted input is sorted by key", []string{"d=4", "b=2", "a=1", "c=3"}, node(node(a, b), node(c, d))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var entries []Entry
			for _, p := range tc.pairs {
				k, v, _ := strings.Cut(p, "=")
				entries = append(entries, Entry{[]byte(k), []byte(v)})
			}
			got, ok := MerkleRoot(entries)
			if !ok || got != Root(tc.want) {
				t.Fatalf("MerkleRoot = %x, %v; want %x", got, ok, tc.want)
			}
			// The streaming summary agrees.
			s, err := Summarize(bytes.NewReader(Encode(&Segment{ID: 7, Timestamp: 9, Entries: entries})))
			if err != nil {
				t.Fatal(err)
			}
			if s.Root == nil || *s.Root != Root(tc.want) || s.Entries != uint64(len(entries)) || s.ID != 7 || s.Timestamp != 9 {
				t.Fatalf("Summarize = %+v root %v; want root %x", s, s.Root, tc.want)
			}
		})
	}
	// Byte-wise order, not string length: "ab" < "b", and 0xff sorts last.
	got, _ := MerkleRoot([]Entry{{[]byte{0xff}, nil}, {[]byte("b"), nil}, {[]byte("ab"), nil}})
	l1, l2, l3 := h([]byte("leaf:ab:")), h([]byte("leaf:b:")), h([]byte("leaf:\xff:"))
	if want := node(node(l1, l2), node(l3, l3)); got != Root(want) {
		t.Fatalf("byte order: %x, want %x", got, want)
	}
	if _, ok := MerkleRoot(nil); ok {
		t.Fatal("no pairs must have no root")
	}
}

func TestSummarize(t *testing.T) {
	seg := &Segment{ID: 3, Timestamp: 1700000000, Entries: []Entry{{[]byte("k1"), []byte("value")}, {[]byte(""), bytes.Repeat([]byte{0}, 200000)}}}
	enc := Encode(seg)
	s, err := Summarize(bytes.NewReader(enc))
	if err != nil {
		t.Fatal(err)
	}
	if s.Size != 7+200000 || s.Entries != 2 || EncodedLen(s.Size, s.Entries) != uint64(len(enc)) {
		t.Fatalf("summary %+v for %d bytes", s, len(enc))
	}
	empty, err := Summarize(bytes.NewReader(Encode(&Segment{ID: 1})))
	if err != nil || empty.Root != nil || empty.Entries != 0 {
		t.Fatalf("empty segment: %+v, %v", empty, err)
	}
	dup := Encode(&Segment{ID: 1, Entries: []Entry{{[]byte("k"), []byte("a")}, {[]byte("k"), []byte("b")}}})
	bad := map[string][]byte{
		"truncated":     enc[:len(enc)-3],
		"trailing":      append(append([]byte(nil), enc...), 0),
		"wrong size":    append(append([]byte(nil), enc[:len(enc)-8]...), 1, 0, 0, 0, 0, 0, 0, 0),
		"duplicate key": dup,
		"huge count":    append(append([]byte(nil), enc[:16]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
		"not a segment": []byte("hello, world"),
	}
	for name, b := range bad {
		if _, err := Summarize(bytes.NewReader(b)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err %v, want ErrFormat", name, err)
		}
	}
}

func TestSidecarJSON(t *testing.T) {
	r := Root{1, 2, 3, 255}
	sc := NewSidecar(6, &Summary{ID: 6, Timestamp: 100, Entries: 2, Size: 10, Root: &r}, 77, true, 200)
	var m map[string]any
	if err := json.Unmarshal(sc.Marshal(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"segment_id", "created_at", "archived_at", "original_size", "compressed_size", "is_compressed", "entry_count"} {
		if _, ok := m[k]; !ok {
			t.Errorf("sidecar lacks %s: %s", k, sc.Marshal())
		}
	}
	arr, ok := m["merkle_root"].([]any)
	if !ok || len(arr) != 32 || arr[3] != float64(255) {
		t.Fatalf("merkle_root must be an array of 32 numbers: %s", sc.Marshal())
	}
	raw, _ := json.Marshal(m["merkle_root"])
	if got, err := ParseRoot(raw); err != nil || got != r {
		t.Fatalf("ParseRoot = %v, %v", got, err)
	}
	for _, s := range []string{`"AQID"`, `[1,2]`, fmt.Sprintf("[%s256]", strings.Repeat("0,", 31))} {
		if _, err := ParseRoot(json.RawMessage(s)); err == nil {
			t.Errorf("ParseRoot(%s) accepted", s)
		}
	}
	noRoot := NewSidecar(1, &Summary{ID: 1}, 40, false, 1).Marshal()
	if bytes.Contains(noRoot, []byte("merkle_root")) {
		t.Fatalf("a segment without entries has no merkle_root: %s", noRoot)
	}
}

// TestSummarizeMemoryBound: a segment of many empty entries, or of one huge
// key, is refused once summarizing it would hold more than
// MaxSummaryMemory, rather than growing without bound.
func TestSummarizeMemoryBound(t *testing.T) {
	old := MaxSummaryMemory
	MaxSummaryMemory = 1 << 20
	defer func() { MaxSummaryMemory = old }()
	many := &Segment{ID: 1}
	for range 1<<20/summaryEntryCost + 1 {
		many.Entries = append(many.Entries, Entry{Key: []byte{}, Value: []byte{}})
	}
	bigKey := &Segment{ID: 2, Entries: []Entry{{Key: make([]byte, 1<<20+1)}}}
	for _, s := range []*Segment{many, bigKey} {
		if _, err := Summarize(bytes.NewReader(Encode(s))); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "to summarize") {
			t.Errorf("segment %d: %v, want the memory bound", s.ID, err)
		}
	}
	many.Entries = many.Entries[:100]
	if _, err := Summarize(bytes.NewReader(Encode(many))); err == nil || !strings.Contains(err.Error(), "occurs more than once") {
		t.Errorf("100 empty keys: %v", err)
	}
}
