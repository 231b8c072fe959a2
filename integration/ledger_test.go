package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

const fixtureDir = "../testdata/scribe-ledger"

type fixture struct {
	Compressed bool `json:"compressed"`
	DecodedLen int  `json:"decoded_len"`
	Entries    int  `json:"entries"`
}

func loadFixtures(t *testing.T) map[uint64]fixture {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtureDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var byName map[string]fixture
	if err := json.Unmarshal(raw, &byName); err != nil {
		t.Fatal(err)
	}
	out := map[uint64]fixture{}
	for k, v := range byName {
		id, _ := strconv.ParseUint(k, 10, 64)
		out[id] = v
	}
	return out
}

// decoded returns the segment bytes a fixture's .bin stands for.
func decoded(t *testing.T, id uint64) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtureDir, "segments", fmt.Sprintf("segment-%016x.bin", id)))
	if err != nil {
		t.Fatal(err)
	}
	if zr, err := gzip.NewReader(bytes.NewReader(raw)); err == nil {
		if b, err := io.ReadAll(zr); err == nil {
			return b
		}
	}
	return raw
}

func (e *env) uploadFixtures(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(fixtureDir, "segments"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		body, _ := os.ReadFile(filepath.Join(fixtureDir, "segments", ent.Name()))
		_, err := e.s3().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String("segments/" + ent.Name()), Body: bytes.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func (e *env) keyExists(key string) bool {
	_, err := e.s3().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	return err == nil
}

// TestScribeLedgerBucket mounts a bucket written by Scribe Ledger nodes.
func TestScribeLedgerBucket(t *testing.T) {
	e := newEnv(t, "")
	e.uploadFixtures(t)
	fixtures := loadFixtures(t)
	m := e.mount()
	want := "1\n2\n42\n1000\n1099511627776\n"
	if got := sh(t, m.Segs(), "ls | sort -n"); got != want {
		t.Fatalf("ls of the fixtures bucket:\n%s\nwant:\n%s", got, want)
	}
	for id, fx := range fixtures {
		got, err := os.ReadFile(m.path(id))
		if err != nil {
			t.Fatalf("segment %d: %v", id, err)
		}
		if !bytes.Equal(got, decoded(t, id)) || len(got) != fx.DecodedLen {
			t.Fatalf("segment %d: %d bytes, want the %d decoded bytes of its .bin", id, len(got), fx.DecodedLen)
		}
		st, _ := os.Stat(m.path(id))
		var meta struct {
			CreatedAt int64 `json:"created_at"`
		}
		mb, _ := os.ReadFile(filepath.Join(fixtureDir, "segments", fmt.Sprintf("segment-%016x.meta.json", id)))
		json.Unmarshal(mb, &meta)
		if st.Size() != int64(fx.DecodedLen) || st.ModTime().Unix() != meta.CreatedAt {
			t.Fatalf("segment %d: size %d mtime %d, want %d and created_at %d", id, st.Size(), st.ModTime().Unix(), fx.DecodedLen, meta.CreatedAt)
		}
	}
	// ls -l shows true lengths without fetching data
	for _, line := range strings.Split(strings.TrimSpace(e.mustRun(nil, "ls", "-l")), "\n") {
		f := strings.Fields(line)
		id, _ := strconv.ParseUint(f[0], 10, 64)
		if f[1] != strconv.Itoa(fixtures[id].DecodedLen) {
			t.Fatalf("scribefs ls -l: %q, want size %d", line, fixtures[id].DecodedLen)
		}
	}
	// dump decodes the encoding
	dump := e.mustRun(nil, "dump", "42")
	if !strings.HasPrefix(dump, "segment_id: 42\ntimestamp: ") || !strings.Contains(dump, "entries: 3\n") {
		t.Fatalf("dump 42:\n%s", dump)
	}
	if r := e.run(strings.NewReader("plain text, not a segment"), "put", "77"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := e.run(nil, "dump", "77"); r.code != 1 || !strings.Contains(r.stderr, "not a Scribe Ledger segment") {
		t.Fatalf("dump of non-segment: %d %q", r.code, r.stderr)
	}
	// overwrite and delete through scribefs keep the bucket consistent
	sh(t, m.Segs(), "printf replaced > 42")
	e.mustRun(nil, "archive", "42")
	if e.keyExists("segments/segment-000000000000002a.meta.json") {
		t.Fatal("sidecar of an overwritten segment left behind")
	}
	if got, _ := e.objectBytes(42); string(got) != "replaced" {
		t.Fatalf("object 42 after overwrite: %q", got)
	}
	sh(t, m.Segs(), "rm 1000")
	if e.keyExists("segments/segment-00000000000003e8.meta.json") || e.keyExists(objectKey(1000)) {
		t.Fatal("rm left the object or its sidecar")
	}
	// another writer adds and removes objects: seen within refresh_secs
	e.s3().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(5000)), Body: strings.NewReader("from another node")})
	e.s3().DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(1))})
	deadline := time.Now().Add(15 * time.Second)
	for {
		ls := sh(t, m.Segs(), "ls | sort -n")
		if strings.Contains(ls, "5000\n") && !strings.HasPrefix(ls, "1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("other writer's changes not visible after 15s (refresh_secs = 2):\n%s", ls)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if got := sh(t, m.Segs(), "cat 5000"); got != "from another node" {
		t.Fatalf("cat of another writer's segment: %q", got)
	}
}

// TestDumpLargeSegmentBoundedMemory: `scribefs dump` of a 192 MiB segment
// (one entry), served by a running mount, decodes as it reads: its peak RSS stays far below the
// segment's size, and its output is whole.
func TestDumpLargeSegmentBoundedMemory(t *testing.T) {
	e := newEnv(t, "")
	const n = 192 << 20
	path := filepath.Join(e.dir, "big.seg")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	var head []byte
	for _, v := range []uint64{5, 1, 1, 1} {
		head = binary.LittleEndian.AppendUint64(head, v)
	}
	head = append(head, 'k')
	head = binary.LittleEndian.AppendUint64(head, n)
	f.Write(head)
	chunk := bytes.Repeat([]byte{'v'}, 1<<20)
	for range n >> 20 {
		f.Write(chunk)
	}
	f.Write(binary.LittleEndian.AppendUint64(nil, n+1))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	e.mustRun(nil, "put", "5", path)
	os.Remove(path)
	// Beside a mount, so the dump's memory is its own (a process that
	// opens the hot tier itself maps the bbolt file, which counts in RSS).
	e.mount()

	out, err := os.Create(filepath.Join(e.dir, "dump.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(scribefs, "--config", e.cfgPath, "dump", "5")
	cmd.Env = cleanEnv()
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Peak anonymous memory (the heap: what decoding as a stream bounds),
	// sampled while it runs; file pages a process maps are not its heap.
	var anon int64
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var werr error
sample:
	for {
		if b, rerr := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)); rerr == nil {
			if m := regexp.MustCompile(`RssAnon:\s+(\d+) kB`).FindSubmatch(b); m != nil {
				kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
				anon = max(anon, kb<<10)
			}
		}
		select {
		case werr = <-done:
			break sample
		case <-time.After(5 * time.Millisecond):
		}
	}
	if werr != nil {
		t.Fatalf("dump: %v: %s", werr, stderr.String())
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	t.Logf("dump: peak RssAnon %d MiB sampled, Maxrss %d MiB; stderr %q", anon>>20, rss>>20, stderr.String())
	rss = anon
	st, _ := out.Stat()
	if want := int64(len("segment_id: 5\ntimestamp: 1\nentries: 1\nsize: 201326593\n\"k\" = \"\"\n") + n); st.Size() != want {
		t.Fatalf("dump printed %d bytes, want %d", st.Size(), want)
	}
	t.Logf("dump of a %d MiB segment: peak RSS %d MiB", n>>20, rss>>20)
	if rss > 96<<20 {
		t.Fatalf("dump of a %d MiB segment peaked at %d MiB RSS", n>>20, rss>>20)
	}
}
