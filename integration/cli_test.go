package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/internal/miniotest"
)

// TestCLIRoundTrips: put/get of 0 B, 1 MiB and 20 MiB (from files and from
// stdin), ls, ls -l, stat, archive then get from S3, rm from both tiers.
func TestCLIRoundTrips(t *testing.T) {
	e := newEnv(t, "")
	sizes := map[uint64]int{10: 0, 11: 1 << 20, 12: 20 << 20}
	for id, n := range sizes {
		data := backendtest.RandomBytes(int64(id), n)
		f := filepath.Join(e.dir, "in"+strconv.FormatUint(id, 10))
		mustWriteFile(t, f, data)
		e.mustRun(nil, "put", strconv.FormatUint(id, 10), f)
		// the same bytes again from stdin, as another id
		e.mustRun(bytes.NewReader(data), "put", strconv.FormatUint(id+100, 10), "-")
	}
	for id, n := range sizes {
		for _, sid := range []uint64{id, id + 100} {
			got := e.mustRun(nil, "get", strconv.FormatUint(sid, 10))
			if !bytes.Equal([]byte(got), backendtest.RandomBytes(int64(id), n)) {
				t.Fatalf("get %d: %d bytes differ from the %d put", sid, len(got), n)
			}
		}
	}
	if got := e.mustRun(nil, "ls"); got != "10\n11\n12\n110\n111\n112\n" {
		t.Fatalf("ls:\n%s", got)
	}
	for _, line := range strings.Split(strings.TrimSpace(e.mustRun(nil, "ls", "-l")), "\n") {
		f := strings.Fields(line)
		id, _ := strconv.ParseUint(f[0], 10, 64)
		if len(f) != 4 || f[1] != strconv.Itoa(sizes[id%100]) || f[3] != "hot" {
			t.Fatalf("ls -l line %q", line)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[2]); err != nil {
			t.Fatalf("ls -l mtime %q: %v", f[2], err)
		}
	}
	st := e.mustRun(nil, "stat", "12")
	for _, want := range []string{"id: 12\n", "size: 20971520\n", "tier: hot\n", "checksum: crc32c:"} {
		if !strings.Contains(st, want) {
			t.Fatalf("stat lacks %q:\n%s", want, st)
		}
	}

	// archive, then the bytes come back from S3
	e.mustRun(nil, "archive", "12", "11")
	if !strings.Contains(e.mustRun(nil, "stat", "12"), "tier: cold\n") {
		t.Fatal("stat after archive does not say cold")
	}
	obj, err := e.objectBytes(12)
	if err != nil || !bytes.Equal(obj, backendtest.RandomBytes(12, 20<<20)) {
		t.Fatalf("S3 object of segment 12: %d bytes, err %v", len(obj), err)
	}
	if got := e.mustRun(nil, "get", "12"); got != string(backendtest.RandomBytes(12, 20<<20)) {
		t.Fatal("get of archived segment differs")
	}
	out := filepath.Join(e.dir, "out12")
	e.mustRun(nil, "get", "12", out)
	if b, _ := os.ReadFile(out); !bytes.Equal(b, backendtest.RandomBytes(12, 20<<20)) {
		t.Fatal("get to file differs")
	}
	if !strings.Contains(e.mustRun(nil, "ls", "-l"), "12 20971520 ") {
		t.Fatal("ls -l lost the archived segment")
	}

	// rm removes it from both tiers and from S3
	e.mustRun(nil, "rm", "12", "10")
	if e.objectExists(12) {
		t.Fatal("rm left the S3 object")
	}
	if got := e.mustRun(nil, "ls"); got != "11\n110\n111\n112\n" {
		t.Fatalf("ls after rm:\n%s", got)
	}
	r := e.run(nil, "get", "12")
	if r.code != 1 || strings.TrimSpace(r.stderr) != "scribefs: segment 12: not found" {
		t.Fatalf("get of removed: exit %d, %q", r.code, r.stderr)
	}
}

func TestCLIBadInput(t *testing.T) {
	e := newEnv(t, "")
	for _, bad := range []string{"abc", "-1", "007", "18446744073709551616"} {
		r := e.run(nil, "get", "--", bad)
		if r.code != 2 || !strings.Contains(r.stderr, "invalid segment id") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("get %s: exit %d, stderr %q", bad, r.code, r.stderr)
		}
	}
	if r := e.run(nil, "put"); r.code != 2 {
		t.Errorf("put without args: exit %d", r.code)
	}
	if r := e.run(nil, "frobnicate"); r.code != 2 {
		t.Errorf("unknown command: exit %d", r.code)
	}
	if r := runScribefs(t, nil, "--config", filepath.Join(e.dir, "missing.toml"), "ls"); r.code != 1 || !strings.Contains(r.stderr, "missing.toml") {
		t.Errorf("missing config: exit %d, %q", r.code, r.stderr)
	}
	bad := filepath.Join(e.dir, "bad.toml")
	mustWriteFile(t, bad, []byte("[storage.s3]\nbucket = \"b\"\npool_size = -3\n"))
	os.Chmod(bad, 0o600)
	if r := runScribefs(t, nil, "--config", bad, "ls"); r.code != 1 || !strings.Contains(r.stderr, "pool_size") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("bad config: exit %d, %q", r.code, r.stderr)
	}
}

// TestHealth: wrong secret, missing bucket and a closed port each get their
// own message, promptly, and the secret is never printed.
func TestHealth(t *testing.T) {
	e := newEnv(t, "")
	if out := e.mustRun(nil, "health"); !strings.Contains(out, "ok") {
		t.Fatalf("health: %q", out)
	}
	orig, _ := os.ReadFile(e.cfgPath)
	cases := []struct {
		name, from, to, want string
	}{
		{"wrong secret", miniotest.SecretKey, "definitely-wrong-secret", "credentials"},
		{"missing bucket", "bucket = \"" + e.bucket + "\"", "bucket = \"no-such-bucket-xyz\"", "does not exist"},
		{"closed port", minio.Endpoint, "http://127.0.0.1:1", "cannot reach"},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		e.writeConfig(strings.Replace(string(orig), c.from, c.to, 1))
		start := time.Now()
		r := e.run(nil, "health")
		took := time.Since(start)
		if r.code != 1 || !strings.Contains(r.stderr, c.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q (want %q)", c.name, r.code, r.stderr, c.want)
		}
		if strings.Contains(r.stderr+r.stdout, "definitely-wrong-secret") || strings.Contains(r.stderr+r.stdout, miniotest.SecretKey) {
			t.Errorf("%s: secret printed: %q", c.name, r.stderr)
		}
		if took > 20*time.Second {
			t.Errorf("%s: health took %v", c.name, took)
		}
		seen[r.stderr] = true
		t.Logf("%s (%v): %s", c.name, took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
	}
	if len(seen) != 3 {
		t.Errorf("messages not distinct: %v", seen)
	}
	e.writeConfig(string(orig))
}
