package integration

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend/backendtest"
)

// ledgerBytes encodes a Scribe Ledger segment with one entry whose value is
// v.
func ledgerBytes(id uint64, v []byte) []byte {
	var b []byte
	for _, x := range []uint64{id, 1, 1, 1} {
		b = binary.LittleEndian.AppendUint64(b, x)
	}
	b = append(b, 'k')
	b = binary.LittleEndian.AppendUint64(b, uint64(len(v)))
	b = append(b, v...)
	return binary.LittleEndian.AppendUint64(b, uint64(len(v)+1))
}

func gzipOf(t *testing.T, data []byte, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(data)
	zw.Close()
	return buf.Bytes()
}

func (e *env) putObject(t *testing.T, key string, body []byte) {
	t.Helper()
	if _, err := e.s3().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) sidecar(t *testing.T, id, original, entries uint64, stored int) {
	t.Helper()
	e.putObject(t, fmt.Sprintf("segments/segment-%016x.meta.json", id), fmt.Appendf(nil,
		`{"segment_id": %d, "created_at": 1700000000, "archived_at": 1700000001, "original_size": %d, "compressed_size": %d, "is_compressed": true, "entry_count": %d}`,
		id, original, stored, entries))
}

// rewriteFooter changes the block size (and size) that the footer of a
// block-compressed object names, and re-seals the footer's CRC32C, as a
// hostile writer of the bucket can. gzip objects end with a 10-byte gzip
// end after the footer.
func rewriteFooter(t *testing.T, obj []byte, gzipEnd bool, blockSize uint32, size uint64) []byte {
	t.Helper()
	out := append([]byte(nil), obj...)
	end := len(out)
	if gzipEnd {
		end -= 10
	}
	f := out[end-52 : end]
	if string(f[:8]) != "SFZBLK01" {
		t.Fatalf("no footer at the end of the object")
	}
	binary.LittleEndian.PutUint32(f[12:], blockSize)
	if size > 0 {
		binary.LittleEndian.PutUint64(f[16:], size)
	}
	binary.LittleEndian.PutUint32(f[48:], crc32.Checksum(f[:48], crc32.MakeTable(crc32.Castagnoli)))
	return out
}

// vmHWM is the peak resident set of process pid.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmHWM in /proc/%d/status", pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// TestHostileBucketThroughMount: objects a hostile writer of the bucket
// made are refused through a real mount (EIO), never served as wrong or
// cut bytes, and reading them keeps the mount's peak RSS within
// [cache] max_bytes + 100 MiB:
//
//  1. a zstd block object whose footer claims 4 GiB blocks;
//  2. a gzip block object whose footer claims one 256 MiB block;
//  3. an upstream gzip object whose sidecar sizes overflow to a negative
//     size, and 4. to 0;
//  5. an upstream gzip of stored deflate blocks (3 MiB) with one payload
//     byte flipped and a true sidecar;
//  6. an upstream gzip that inflates to 8.3 MB under a sidecar implying
//     3.1 MB.
func TestHostileBucketThroughMount(t *testing.T) {
	e := newEnv(t, "archive_after_secs = 86400\ncheck_interval_secs = 3600\ncompression = \"zstd\"\n")
	// 1: written and archived by scribefs as zstd, then its footer rewritten.
	e.mustRun(strings.NewReader("0123456789"), "put", "1", "-")
	e.mustRun(nil, "archive", "1")
	zobj, err := e.objectBytes(1)
	if err != nil {
		t.Fatal(err)
	}
	// 2: the same with gzip blocks, 1 MiB of zeros.
	cfg, _ := os.ReadFile(e.cfgPath)
	e.writeConfig(strings.Replace(string(cfg), `compression = "zstd"`, `compression = "gzip"`, 1))
	e.mustRun(bytes.NewReader(make([]byte, 1<<20)), "put", "2", "-")
	e.mustRun(nil, "archive", "2")
	gobj, err := e.objectBytes(2)
	if err != nil {
		t.Fatal(err)
	}
	e.putObject(t, objectKey(1), rewriteFooter(t, zobj, false, 1<<32-1, 0))
	e.putObject(t, objectKey(2), rewriteFooter(t, gobj, true, 256<<20, 256<<20))

	// 3, 4: sidecars whose sizes overflow.
	small := gzipOf(t, ledgerBytes(3, []byte("value")), gzip.DefaultCompression)
	for _, c := range []struct{ id, original, entries uint64 }{{3, 1<<63 - 1, 1}, {4, 1<<64 - 32, 0}} {
		e.putObject(t, objectKey(c.id), small)
		e.sidecar(t, c.id, c.original, c.entries, len(small))
	}
	// 5: stored deflate blocks, one payload byte flipped, a true sidecar.
	seg5 := ledgerBytes(5, backendtest.RandomBytes(5, 3<<20))
	obj5 := gzipOf(t, seg5, flate.NoCompression)
	obj5[len(obj5)/2] ^= 0x01
	e.putObject(t, objectKey(5), obj5)
	e.sidecar(t, 5, uint64(len(seg5)-32-16), 1, len(obj5))
	// 6: inflates to 8.3 MB; the sidecar implies 3.1 MB.
	seg6 := ledgerBytes(6, bytes.Repeat([]byte("x"), 8_300_000))
	obj6 := gzipOf(t, seg6, gzip.BestCompression)
	e.putObject(t, objectKey(6), obj6)
	e.sidecar(t, 6, 3_100_000-32-16, 1, len(obj6))

	m := e.mount()
	base := vmHWM(t, m.cmd.Process.Pid)
	for _, c := range []struct {
		id   uint64
		name string
	}{
		{1, "footer claims 4 GiB blocks"}, {2, "gzip footer claims a 256 MiB block"},
		{3, "sidecar size overflows negative"}, {4, "sidecar size overflows to 0"},
		{5, "stored deflate with a flipped byte"}, {6, "inflates past the sidecar's size"},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			out, err := shErr(m.Segs(), fmt.Sprintf("cat %d | wc -c", c.id))
			peak := vmHWM(t, m.cmd.Process.Pid)
			t.Logf("segment %d: cat: %v %q in %s; mount peak RSS %d MiB", c.id, err, strings.TrimSpace(out), time.Since(start).Round(time.Millisecond), peak>>20)
			if !strings.Contains(out, "Input/output error") {
				t.Errorf("segment %d: cat did not fail with EIO: %q", c.id, out)
			}
			if limit := int64(64<<20 + 100<<20); peak > limit {
				t.Errorf("segment %d: mount peak RSS %d MiB (before the reads %d MiB), over cache + 100 MiB", c.id, peak>>20, base>>20)
			}
		})
	}
	// verify names every one of them.
	r := e.run(nil, "verify")
	for _, id := range []string{"1", "2", "3", "4", "5", "6"} {
		if !regexp.MustCompile(`(?m)segment ` + id + `\b`).MatchString(r.stdout + r.stderr) {
			t.Errorf("verify does not name segment %s:\n%s%s", id, r.stdout, r.stderr)
		}
	}
	if r.code != 1 {
		t.Errorf("verify exit %d, want 1", r.code)
	}
}
