package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// statField returns the integer value of a "name: N" line of `scribefs stat`.
func statField(t *testing.T, out, name string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `: (\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s line in stat output:\n%s", name, out)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// TestCompress: with tiering.compression set, an archived segment is stored
// compressed in S3, stat shows both sizes, and the mount reads the original
// bytes back, whole and in a ranged read, from a fresh cache.
func TestCompress(t *testing.T) {
	for _, mode := range []string{"zstd", "gzip"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, "archive_after_secs = 86400\ncheck_interval_secs = 3600\ncompression = \""+mode+"\"\n")
			m := e.mount()
			sh(t, e.dir, "{ yes scribefs || true; } | head -c 5242880 > src && printf 'a marker in the middle' | dd of=src bs=1 seek=3000000 conv=notrunc status=none")
			src := filepath.Join(e.dir, "src")
			sh(t, m.Segs(), "cp "+src+" 1")
			e.mustRun(nil, "archive", "1")

			out := e.mustRun(nil, "stat", "1")
			if !strings.Contains(out, "compression: "+mode+"-blocks\n") || !strings.Contains(out, "tier: cold") {
				t.Fatalf("stat of an archived segment with compression = %q:\n%s", mode, out)
			}
			size, stored := statField(t, out, "size"), statField(t, out, "stored_size")
			obj, err := e.objectBytes(1)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d bytes stored as %d (S3 object %d)", mode, size, stored, len(obj))
			if size != 5242880 || stored*10 > size || int64(len(obj)) != stored {
				t.Fatalf("size %d, stored_size %d, S3 object %d bytes", size, stored, len(obj))
			}

			m.unmount()
			m = e.mount() // a fresh process: empty cache, index read from S3
			sh(t, m.Segs(), "cmp "+src+" 1")
			got := sh(t, m.Segs(), "dd if=1 bs=4096 skip=732 count=1 status=none")
			data, _ := os.ReadFile(src)
			if want := string(data[732*4096 : 733*4096]); got != want {
				t.Fatalf("4 KiB dd at offset %d: %q, want %q", 732*4096, got[:40], want[:40])
			}

			if mode == "gzip" { // the object is one valid gzip stream
				objPath := filepath.Join(e.dir, "object.gz")
				mustWriteFile(t, objPath, obj)
				sh(t, e.dir, "gunzip -c object.gz > gunzipped && cmp src gunzipped")
			} else {
				objPath := filepath.Join(e.dir, "object.zst")
				mustWriteFile(t, objPath, obj)
				if out, err := shErr(e.dir, "command -v zstd"); err == nil && out != "" {
					sh(t, e.dir, "zstd -q -d -c object.zst > unzstd && cmp src unzstd")
				}
			}
			if !bytes.Contains(data, []byte("a marker in the middle")) {
				t.Fatal("source lacks its marker")
			}
		})
	}
}
