package segment

import (
	"errors"
	"strconv"
	"testing"
)

func TestParseID(t *testing.T) {
	tests := []struct {
		in   string
		want ID
		ok   bool
	}{
		{"0", 0, true},
		{"42", 42, true},
		{"18446744073709551615", 1<<64 - 1, true},
		{"18446744073709551616", 0, false},
		{"abc", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"007", 0, false},
		{"00", 0, false},
		{"", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"1e3", 0, false},
		{"0x10", 0, false},
		{".1", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseID(tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("ParseID(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidID) {
			t.Errorf("ParseID(%q): error %v is not ErrInvalidID", tc.in, err)
		}
	}
}

func TestHexRoundTrip(t *testing.T) {
	for _, id := range []ID{0, 1, 42, 1000, 1 << 40, 1<<64 - 1} {
		h := id.Hex()
		if len(h) != 16 {
			t.Fatalf("%d: hex %q", id, h)
		}
		back, err := ParseHex(h)
		if err != nil || back != id {
			t.Fatalf("%d: ParseHex(%q) = %d, %v", id, h, back, err)
		}
	}
	if ID(42).Hex() != "000000000000002a" {
		t.Fatalf("hex of 42: %s", ID(42).Hex())
	}
	for _, bad := range []string{"2a", "000000000000002A", "00000000000000zz", "0000000000000000a"} {
		if _, err := ParseHex(bad); err == nil {
			t.Errorf("ParseHex(%q) accepted", bad)
		}
	}
}

func TestSummerChunking(t *testing.T) {
	data := make([]byte, 3*BlockSize+5)
	for i := range data {
		data[i] = byte(i * 7)
	}
	want := Sum(data)
	if len(want.Blocks) != 4 {
		t.Fatalf("%d blocks", len(want.Blocks))
	}
	var s Summer
	for off := 0; off < len(data); {
		n := min(1+off%100003, len(data)-off)
		s.Write(data[off : off+n])
		off += n
	}
	if !s.Sums().Equal(want) {
		t.Fatal("chunked sums differ")
	}
	for i := int64(0); i < 4; i++ {
		end := min((i+1)*BlockSize, int64(len(data)))
		if err := want.VerifyBlock(i, data[i*BlockSize:end]); err != nil {
			t.Fatal(err)
		}
	}
	data[BlockSize+1] ^= 1
	if err := want.VerifyBlock(1, data[BlockSize:2*BlockSize]); !errors.Is(err, ErrChecksum) {
		t.Fatalf("corrupted block: %v", err)
	}
	enc, _ := want.MarshalBinary()
	var dec Checksums
	if err := dec.UnmarshalBinary(enc); err != nil || !dec.Equal(want) {
		t.Fatalf("binary round trip: %v", err)
	}
}

// FuzzParseID: ParseID accepts exactly the canonical decimal forms, and
// String inverts it.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"0", "42", "007", "-1", "abc", "18446744073709551615", "18446744073709551616", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("%q: error not ErrInvalidID: %v", s, err)
			}
			if v, perr := strconv.ParseUint(s, 10, 64); perr == nil && strconv.FormatUint(v, 10) == s {
				t.Fatalf("%q: canonical id rejected: %v", s, err)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("%q parsed to %d, which prints as %q", s, id, id.String())
		}
	})
}
