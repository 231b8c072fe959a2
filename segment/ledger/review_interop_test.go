package ledger

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"
)

// TestReviewSummarizeAgreesWithDecode: for every truncation and every
// single-byte change (to 0x00, 0xff, +1) of a small segment's encoding,
// Summarize (what decides whether a sidecar is written) accepts exactly
// the bytes Decode accepts (less duplicate keys), and for accepted bytes
// its entry count, size, timestamp and root are Decode's.
func TestReviewSummarizeAgreesWithDecode(t *testing.T) {
	base := Encode(&Segment{ID: 9, Timestamp: 77, Entries: []Entry{
		{Key: []byte("b"), Value: []byte("two")},
		{Key: []byte(""), Value: []byte("")},
		{Key: []byte("a"), Value: []byte("1")},
	}})
	var inputs [][]byte
	for n := 0; n <= len(base)+1; n++ {
		if n <= len(base) {
			inputs = append(inputs, base[:n])
		} else {
			inputs = append(inputs, append(append([]byte(nil), base...), 0))
		}
	}
	for i := range base {
		for _, f := range []func(byte) byte{func(byte) byte { return 0 }, func(byte) byte { return 0xff }, func(b byte) byte { return b + 1 }} {
			m := append([]byte(nil), base...)
			m[i] = f(m[i])
			inputs = append(inputs, m)
		}
	}
	checked := 0
	for _, in := range inputs {
		seg, derr := Decode(in)
		if derr == nil {
			seen := map[string]bool{}
			for _, e := range seg.Entries {
				if seen[string(e.Key)] {
					derr = errors.New("duplicate")
				}
				seen[string(e.Key)] = true
			}
		}
		sum, serr := Summarize(bytes.NewReader(in))
		if (derr == nil) != (serr == nil) {
			t.Fatalf("%x: Decode err %v, Summarize err %v", in, derr, serr)
		}
		if derr != nil {
			continue
		}
		checked++
		root, ok := MerkleRoot(seg.Entries)
		if sum.ID != seg.ID || sum.Timestamp != seg.Timestamp || sum.Entries != uint64(len(seg.Entries)) || sum.Size != seg.Size ||
			ok != (sum.Root != nil) || ok && *sum.Root != root {
			t.Fatalf("%x: Summarize %+v, Decode %+v", in, sum, seg)
		}
	}
	t.Logf("%d inputs, %d accepted by both", len(inputs), checked)
}

// TestReviewSummarizeGzipCRC: a gzip member whose CRC32 or ISIZE is wrong
// is not summarized (a node's GzDecoder refuses it), even though every
// byte of the segment decodes.
func TestReviewSummarizeGzipCRC(t *testing.T) {
	enc := Encode(&Segment{ID: 1, Timestamp: 2, Entries: []Entry{{Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 5000)}}})
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(enc)
	zw.Close()
	good := buf.Bytes()
	for _, pos := range []int{len(good) - 8, len(good) - 1} { // CRC32, ISIZE
		bad := append([]byte(nil), good...)
		bad[pos] ^= 1
		zr, err := gzip.NewReader(bytes.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false)
		if s, err := Summarize(zr); err == nil {
			t.Fatalf("byte %d of the trailer damaged: summarized as %+v", pos, s)
		}
	}
	zr, _ := gzip.NewReader(bytes.NewReader(good))
	zr.Multistream(false)
	if _, err := Summarize(io.Reader(zr)); err != nil {
		t.Fatal(err)
	}
}
