package compress

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/segment"
)

// strictMember decodes exactly one gzip member at the start of b the way a
// strict RFC 1952 decoder does: header fields checked, the raw deflate
// stream decoded up to its final block, then CRC32 and ISIZE compared with
// what it produced. It returns the member's data and the bytes after it.
func strictMember(b []byte) (data, rest []byte, err error) {
	if len(b) < 18 || b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 {
		return nil, nil, errors.New("bad gzip magic/method")
	}
	flg := b[3]
	if flg&0xe0 != 0 {
		return nil, nil, errors.New("reserved flag bits set")
	}
	p := 10
	if flg&4 != 0 {
		xlen := int(binary.LittleEndian.Uint16(b[p:]))
		p += 2 + xlen
	}
	for _, f := range []byte{8, 16} { // FNAME, FCOMMENT
		if flg&f != 0 {
			i := bytes.IndexByte(b[p:], 0)
			if i < 0 {
				return nil, nil, errors.New("unterminated string")
			}
			p += i + 1
		}
	}
	if flg&2 != 0 {
		p += 2
	}
	br := bytes.NewReader(b[p:]) // an io.ByteReader: flate reads no further than the stream
	fr := flate.NewReader(br)
	data, err = io.ReadAll(fr)
	if err != nil {
		return nil, nil, err
	}
	after := b[len(b)-br.Len():]
	if len(after) < 8 {
		return nil, nil, errors.New("truncated gzip trailer")
	}
	if got, want := crc32.ChecksumIEEE(data), binary.LittleEndian.Uint32(after); got != want {
		return nil, nil, errors.New("CRC32 mismatch")
	}
	if got, want := uint32(len(data)), binary.LittleEndian.Uint32(after[4:]); got != want {
		return nil, nil, errors.New("ISIZE mismatch")
	}
	return data, after[8:], nil
}

// TestReviewGzipV2StrictMember: a v2 gzip object of several blocks, one of
// them incompressible (deflate emits stored blocks), a full last block and
// a 1-byte last block, read by a strict one-member decoder: the one data
// member holds exactly the segment with its CRC32 and ISIZE; every member
// after it decodes to nothing (so `gzip -dc` and multi-member readers give
// the segment once, without complaint); ranged reads at block boundaries
// through the wrapper return the right bytes.
func TestReviewGzipV2StrictMember(t *testing.T) {
	inner := mustLocal(t)
	b := mustNew(t, inner, Gzip)
	defer b.Close()
	rng := rand.New(rand.NewSource(42))
	random := make([]byte, segment.BlockSize)
	rng.Read(random)
	bs := segment.BlockSize
	cases := map[string][]byte{
		"incompressible middle block, exact multiple": append(append(compressible(1, bs), random...), compressible(2, bs)...),
		"incompressible last block, 1 extra byte":     append(append(compressible(3, 2*bs), random...), 'x'),
		"all incompressible, partial last":            append(append([]byte(nil), random...), random[:bs/3]...),
		"one byte":                                    {0},
	}
	id := segment.ID(10)
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			id++
			backendtest.MustPut(t, b, id, data)
			raw := mustRead(t, inner, id, backend.Whole)
			got, rest, err := strictMember(raw)
			if err != nil {
				t.Fatalf("strict decoder: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("strict decoder: member holds %d bytes, segment is %d", len(got), len(data))
			}
			// Every following member decodes to nothing.
			for n := 0; len(rest) > 0; n++ {
				extra, r, err := strictMember(rest)
				if err != nil || len(extra) != 0 {
					t.Fatalf("trailing member %d: %d bytes, %v", n, len(extra), err)
				}
				rest = r
			}
			// Go's multistream reader and the gzip tool see the segment once.
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			all, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(all, data) {
				t.Fatalf("multistream read: %d bytes, %v", len(all), err)
			}
			if path, err := exec.LookPath("gzip"); err == nil {
				cmd := exec.Command(path, "-dc")
				cmd.Stdin = bytes.NewReader(raw)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil || stderr.Len() > 0 || !bytes.Equal(out, data) {
					t.Fatalf("gzip -dc: %d bytes, err %v, stderr %q", len(out), err, stderr.String())
				}
			}
			// Ranges at and across block boundaries.
			n := int64(len(data))
			for _, r := range [][2]int64{{0, 1}, {int64(bs) - 1, 2}, {int64(bs), int64(bs)}, {int64(bs) - 1, int64(bs) + 2}, {n - 1, 1}, {n, 0}, {0, n}} {
				off, ln := r[0], r[1]
				if off > n || off+ln > n {
					continue
				}
				part := mustRead(t, b, id, backend.GetOptions{Offset: off, Length: ln})
				if !bytes.Equal(part, data[off:off+ln]) {
					t.Fatalf("range [%d,+%d): %d bytes differ", off, ln, len(part))
				}
			}
		})
	}
}

// TestReviewGzipV2PythonStrict: Python's zlib with wbits=31 (one member,
// stops at its end, checks CRC and ISIZE) decodes the object's first
// member to the whole segment, as flate2's GzDecoder would.
func TestReviewGzipV2PythonStrict(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 not installed in CI (make deps installs it)")
		}
		t.Skip("python3 not installed")
	}
	inner := mustLocal(t)
	b := mustNew(t, inner, Gzip)
	defer b.Close()
	rng := rand.New(rand.NewSource(7))
	random := make([]byte, segment.BlockSize/2)
	rng.Read(random)
	data := append(append(compressible(5, 2*segment.BlockSize+11), random...), compressible(6, 100)...)
	backendtest.MustPut(t, b, 3, data)
	raw := mustRead(t, inner, 3, backend.Whole)
	script := `import sys, zlib, hashlib
raw = sys.stdin.buffer.read()
d = zlib.decompressobj(31)
out = d.decompress(raw)
print(d.eof, len(out), hashlib.sha256(out).hexdigest(), len(d.unused_data))`
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v: %s", err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 4 || f[0] != "True" || f[1] != itoa(len(data)) {
		t.Fatalf("python zlib one member: %s (segment %d bytes)", out, len(data))
	}
}

func itoa(n int) string {
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(buf[i:])
}

// TestReviewGzipV2HostileTrailer: a v2 object whose footer's index offset
// or index region is moved, or whose data member's frame lengths are
// shifted by one byte, is refused with a checksum/format error, never read
// as other bytes and never a panic.
func TestReviewGzipV2HostileTrailer(t *testing.T) {
	inner := mustLocal(t)
	b := mustNew(t, inner, Gzip)
	defer b.Close()
	data := compressible(11, 2*segment.BlockSize+500)
	backendtest.MustPut(t, b, 1, data)
	raw := mustRead(t, inner, 1, backend.Whole)
	fstart := len(raw) - len(gzipEnd) - footerLen
	mutate := func(name string, fn func(obj []byte)) {
		t.Run(name, func(t *testing.T) {
			obj := append([]byte(nil), raw...)
			fn(obj)
			backendtest.MustPut(t, inner, 2, obj)
			r, err := b.Get(ctx, 2, backend.Whole)
			if err == nil {
				var got []byte
				got, err = io.ReadAll(r)
				r.Close()
				if err == nil && !bytes.Equal(got, data) {
					t.Fatalf("hostile object read as %d other bytes", len(got))
				}
			}
			if err == nil {
				t.Fatalf("hostile object read without error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %v", err)
			}
			t.Logf("%v", err)
		})
	}
	reseal := func(fb []byte) {
		binary.LittleEndian.PutUint32(fb[48:], segment.CRC32C(fb[:48]))
	}
	mutate("index offset +1", func(obj []byte) {
		fb := obj[fstart : fstart+footerLen]
		binary.LittleEndian.PutUint64(fb[32:], binary.LittleEndian.Uint64(fb[32:])+1)
		reseal(fb)
	})
	mutate("index offset -13 (to the data member's close)", func(obj []byte) {
		fb := obj[fstart : fstart+footerLen]
		binary.LittleEndian.PutUint64(fb[32:], binary.LittleEndian.Uint64(fb[32:])-13)
		reseal(fb)
	})
	mutate("version 1 claimed for a v2 object", func(obj []byte) {
		fb := obj[fstart : fstart+footerLen]
		fb[8] = 1
		reseal(fb)
	})
	mutate("huge index offset", func(obj []byte) {
		fb := obj[fstart : fstart+footerLen]
		binary.LittleEndian.PutUint64(fb[32:], 1<<62)
		reseal(fb)
	})
	mutate("data member ISIZE wrong", func(obj []byte) {
		// The first frame decodes alone; the member's close is 13 bytes
		// before the index: flip its ISIZE. The wrapper checks CRC32C per
		// block, but a node checks ISIZE: the wrapper should not vouch for
		// an object a node refuses.
		fb := obj[fstart : fstart+footerLen]
		off := binary.LittleEndian.Uint64(fb[32:])
		obj[off-1] ^= 0xff
	})
	mutate("data member header magic damaged", func(obj []byte) {
		// The wrapper reads frames from offset 10 and never looks at the
		// header a node parses first.
		obj[0] ^= 0xff
	})
}
