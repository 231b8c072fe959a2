package integration

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestDamagedHotTier: a hot-tier file that is damaged, foreign or of another
// format version is refused by `ls` and `mount` with one line naming the
// file; no panic, no stack trace, and the file is left byte for byte as it
// was.
func TestDamagedHotTier(t *testing.T) {
	e := newEnv(t, "")
	e.mustRun(strings.NewReader(strings.Repeat("real data ", 50_000)), "put", "1")
	e.mustRun(strings.NewReader("small"), "put", "2")
	good, err := os.ReadFile(e.hotPath)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(e.cfgPath)
	cases := []struct {
		name string
		make func(path string)
		want string
	}{
		{"both meta pages zeroed", func(p string) {
			b := append([]byte(nil), good...)
			clear(b[:8192])
			mustWriteFile(t, p, b)
		}, ""},
		{"meta page checksums broken", func(p string) {
			b := append([]byte(nil), good...)
			b[60] ^= 0xff
			b[4096+60] ^= 0xff
			mustWriteFile(t, p, b)
		}, ""},
		{"not a bbolt file", func(p string) { mustWriteFile(t, p, []byte(strings.Repeat("#!/bin/sh\necho hi\n", 500))) }, "not a scribefs hot-tier file"},
		{"truncated to 100 bytes", func(p string) { mustWriteFile(t, p, good[:100]) }, ""},
		{"bbolt file of another program", func(p string) {
			db, err := bolt.Open(p, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bolt.Tx) error {
				b, _ := tx.CreateBucket([]byte("accounts"))
				return b.Put([]byte("alice"), []byte("42"))
			})
			db.Close()
		}, "another program"},
		{"another format version", func(p string) {
			mustWriteFile(t, p, good)
			db, err := bolt.Open(p, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("scribefs")).Put([]byte("format"), []byte("scribefs-hot-9"))
			})
			db.Close()
		}, "scribefs-hot-9"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(e.dir, "damaged", string(rune('a'+i)), "hot.db")
			os.MkdirAll(filepath.Dir(path), 0o700)
			c.make(path)
			before := fileSum(t, path)
			e.writeConfig(strings.Replace(string(orig), e.hotPath, path, 1))
			for _, args := range [][]string{{"ls"}, {"stat", "1"}, {"mount", filepath.Join(e.dir, "mnt-damaged")}} {
				os.MkdirAll(filepath.Join(e.dir, "mnt-damaged"), 0o755)
				r := e.run(nil, args...)
				msg := r.stderr
				if r.code != 1 || strings.Count(msg, "\n") != 1 || !strings.Contains(msg, path) {
					t.Fatalf("%v: exit %d, want 1 and one line naming %s: %q", args, r.code, path, msg)
				}
				if strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine ") {
					t.Fatalf("%v: panicked: %s", args, msg)
				}
				if c.want != "" && !strings.Contains(msg, c.want) {
					t.Fatalf("%v: %q does not say %q", args, msg, c.want)
				}
				if fileSum(t, path) != before {
					t.Fatalf("%v changed the damaged file", args)
				}
				t.Logf("MEASURED %s, %s: exit 1, %s", c.name, args[0], strings.TrimSpace(msg))
			}
		})
	}
	e.writeConfig(string(orig))
}
