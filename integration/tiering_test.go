package integration

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/scribefs/scribefs/backend/backendtest"
)

// TestWriteThrough: with archive_after_secs = 0, S3 holds the segment by the
// time close() returns.
func TestWriteThrough(t *testing.T) {
	e := newEnv(t, "archive_after_secs = 0\n")
	m := e.mount()
	data := backendtest.RandomBytes(3, 3<<20)
	src := filepath.Join(e.dir, "src")
	mustWriteFile(t, src, data)
	sh(t, m.Segs(), "cp "+src+" 3")
	// no waiting: cp has returned, so close() has
	got, err := e.objectBytes(3)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("S3 object right after close: %d bytes, %v", len(got), err)
	}
	if !strings.Contains(e.mustRun(nil, "stat", "3"), "tier: cold") {
		t.Fatal("write-through segment not reported cold")
	}
}

// TestAgePolicy: a segment older than archive_after_secs moves to S3 on its
// own and still reads back.
func TestAgePolicy(t *testing.T) {
	e := newEnv(t, "archive_after_secs = 2\ncheck_interval_secs = 1\n")
	m := e.mount()
	sh(t, m.Segs(), "printf aged > 11")
	if e.objectExists(11) {
		t.Fatal("archived before its time")
	}
	deadline := time.Now().Add(20 * time.Second)
	for !e.objectExists(11) {
		if time.Now().After(deadline) {
			t.Fatal("not archived within 20s with archive_after_secs = 2")
		}
		time.Sleep(200 * time.Millisecond)
	}
	for !strings.Contains(e.mustRun(nil, "stat", "11"), "tier: cold") {
		if time.Now().After(deadline) {
			t.Fatal("hot copy not dropped after archival")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := sh(t, m.Segs(), "cat 11"); got != "aged" {
		t.Fatalf("read after archival: %q", got)
	}
}

// TestOutageThenRecovery: MinIO stops; hot reads and writes go on and a
// delete of a cold segment is recorded; MinIO returns; archival and the
// pending delete complete, and the deleted segment never comes back.
func TestOutageThenRecovery(t *testing.T) {
	e := newEnv(t, "archive_after_secs = 1\ncheck_interval_secs = 1\n")
	e.mustRun(strings.NewReader("to be deleted"), "put", "20")
	e.mustRun(nil, "archive", "20")
	m := e.mount()
	minio.Stop()
	restarted := false
	defer func() {
		if !restarted {
			minio.Restart()
		}
	}()
	sh(t, m.Segs(), "printf during > 21 && cat 21 > /dev/null && rm 20")
	if out, _ := shErr(m.Segs(), "ls"); strings.Contains(out, "20\n") {
		t.Fatalf("deleted segment still listed during the outage: %q", out)
	}
	time.Sleep(3 * time.Second) // archival attempts fail meanwhile
	if err := minio.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	deadline := time.Now().Add(30 * time.Second)
	for e.objectExists(20) || !e.objectExists(21) {
		if time.Now().After(deadline) {
			t.Fatalf("after recovery: object 20 exists=%v (want deleted), 21 exists=%v (want archived)", e.objectExists(20), e.objectExists(21))
		}
		time.Sleep(250 * time.Millisecond)
	}
	m.unmount()
	m2 := e.mount()
	if got := sh(t, m2.Segs(), "ls"); got != "21\n" {
		t.Fatalf("after remount: %q", got)
	}
}

// TestCorruptObjectIsEIO: bytes changed behind scribefs's back are never
// returned: the read fails with EIO.
func TestCorruptObjectIsEIO(t *testing.T) {
	e := newEnv(t, "")
	// 10 MiB: more than one fetch span, so reads are checked block by block
	// (a segment that one fetch covers is checked whole, below).
	data := backendtest.RandomBytes(9, 10<<20)
	mustWriteFile(t, filepath.Join(e.dir, "d"), data)
	e.mustRun(nil, "put", "9", filepath.Join(e.dir, "d"))
	e.mustRun(nil, "archive", "9")
	// rewrite the object with one flipped byte, keeping its metadata
	ctx := context.Background()
	head, err := e.s3().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(9))})
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), data...)
	bad[1<<20+5] ^= 0x01
	if _, err := e.s3().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(9)),
		Body: bytes.NewReader(bad), Metadata: head.Metadata}); err != nil {
		t.Fatal(err)
	}
	// a fresh host (no index, no cache) reads checksums from the object
	h2 := &env{t: t, dir: t.TempDir(), bucket: e.bucket}
	h2.hotPath = filepath.Join(h2.dir, "hot.db")
	cfg, _ := os.ReadFile(e.cfgPath)
	h2.writeConfig(strings.Replace(string(cfg), e.hotPath, h2.hotPath, 1))
	m := h2.mount("--read-only")
	out, err := shErr(m.Segs(), "dd if=9 of=/dev/null bs=1M skip=1 count=1 status=none")
	if err == nil || !strings.Contains(out, "Input/output error") {
		t.Fatalf("read of corrupted block: %v %q", err, out)
	}
	if got := sh(t, m.Segs(), "dd if=9 bs=1M count=1 status=none | cmp - <(head -c 1048576 "+filepath.Join(e.dir, "d")+") && echo same"); got != "same\n" {
		t.Fatalf("intact block: %q", got)
	}
	if !strings.Contains(m.logs.String(), "checksum") {
		t.Errorf("no log line about the checksum: %s", m.logs.String())
	}
	// a small segment, read whole, is checked against its recorded checksum
	small := backendtest.RandomBytes(10, 300<<10)
	mustWriteFile(t, filepath.Join(e.dir, "s"), small)
	e.mustRun(nil, "put", "10", filepath.Join(e.dir, "s"))
	e.mustRun(nil, "archive", "10")
	head, err = e.s3().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(10))})
	if err != nil {
		t.Fatal(err)
	}
	small[1000] ^= 0x01
	if _, err := e.s3().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(10)),
		Body: bytes.NewReader(small), Metadata: head.Metadata}); err != nil {
		t.Fatal(err)
	}
	m.unmount()
	m = h2.mount("--read-only")
	if out, err := shErr(m.Segs(), "cat 10 > /dev/null"); err == nil || !strings.Contains(out, "Input/output error") {
		t.Fatalf("read of a corrupted small segment: %v %q", err, out)
	}
}
