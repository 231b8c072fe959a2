package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/segment"
)

func mustOpen(t *testing.T, path string) *Backend {
	t.Helper()
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return b
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return mustOpen(t, filepath.Join(t.TempDir(), "hot.db"))
	}, backendtest.Options{LargeSize: 70<<20 + 5})
}

func TestLockTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hot.db")
	b := mustOpen(t, path)
	defer b.Close()
	start := time.Now()
	_, err := Open(path, Options{LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error does not name the file: %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("second open took %v", time.Since(start))
	}
}

func TestRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]byte{
		"garbage": bytes.Repeat([]byte("not a database "), 500),
		"short":   []byte("x"),
	}
	for name, content := range cases {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(path, Options{})
		if err == nil || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s: open err %v, want a one-line refusal naming the file", name, err)
		}
		after, _ := os.ReadFile(path)
		if !bytes.Equal(after, content) {
			t.Fatalf("%s: refused file was modified", name)
		}
	}
}

// TestCrashLeavesNoOrphans simulates a writer that died mid-put: the pending
// generation's chunks are freed at the next open and the old version stays.
func TestCrashLeavesNoOrphans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hot.db")
	b := mustOpen(t, path)
	old := backendtest.RandomBytes(1, 1000)
	if _, err := b.Put(context.Background(), 7, bytes.NewReader(old), backend.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	// A reader that blocks after 40 MiB: the first batch commits as pending.
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := b.Put(context.Background(), 7, pr, backend.PutOptions{Size: -1})
		done <- err
	}()
	pw.Write(backendtest.RandomBytes(2, 40<<20))
	// Wait until the pending generation is committed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := b.GarbageChunks()
		if n >= batchBytes/segment.BlockSize {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending chunks never appeared (%d)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// "Crash": copy the file as it is now, as a kill -9 would leave it.
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(crashed, data, 0o600)
	pw.CloseWithError(errors.New("writer gone"))
	<-done
	b.Close()

	c := mustOpen(t, crashed)
	defer c.Close()
	if err := c.WaitGC(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, err := c.GarbageChunks(); err != nil || n != 0 {
		t.Fatalf("after reopen: %d orphaned chunks (%v)", n, err)
	}
	r, err := c.Get(context.Background(), 7, backend.Whole)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, old) {
		t.Fatal("old version lost after crashed overwrite")
	}
}

// TestPinnedReaderSurvivesOverwrite: a pinned version stays readable through
// an overwrite and a delete, and its chunks are freed after release.
func TestPinnedReaderSurvivesOverwrite(t *testing.T) {
	b := mustOpen(t, filepath.Join(t.TempDir(), "hot.db"))
	defer b.Close()
	ctx := context.Background()
	v1 := backendtest.RandomBytes(3, 3*segment.BlockSize+5)
	info, err := b.Put(ctx, 1, bytes.NewReader(v1), backend.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	pinned, release, err := b.PinCurrent(1)
	if err == nil && pinned.Version != info.Version {
		t.Fatalf("pinned version %s, put %s", pinned.Version, info.Version)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, 1, strings.NewReader("v2"), backend.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, 1, ""); err != nil {
		t.Fatal(err)
	}
	b.WaitGC(ctx)
	got := make([]byte, len(v1))
	if n, err := b.ReadAt(info.Version, got, 0); n != len(v1) || (err != nil && err != io.EOF) {
		t.Fatalf("pinned read: %d, %v", n, err)
	}
	if !bytes.Equal(got, v1) {
		t.Fatal("pinned read returned other bytes")
	}
	release()
	if err := b.WaitGC(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.GarbageChunks(); n != 0 {
		t.Fatalf("%d chunks left after release", n)
	}
	if _, err := b.ReadAt(info.Version, got, 0); !errors.Is(err, backend.ErrStale) {
		t.Fatalf("read after release: %v, want ErrStale", err)
	}
}

func TestRenameAndModTime(t *testing.T) {
	b := mustOpen(t, filepath.Join(t.TempDir(), "hot.db"))
	defer b.Close()
	ctx := context.Background()
	b.Put(ctx, 1, strings.NewReader("one"), backend.PutOptions{Size: -1})
	b.Put(ctx, 2, strings.NewReader("two"), backend.PutOptions{Size: -1})
	if err := b.Rename(ctx, 1, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, 1); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("old name after rename: %v", err)
	}
	r, _ := b.Get(ctx, 2, backend.Whole)
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != "one" {
		t.Fatalf("renamed content %q", got)
	}
	if b.Usage() != 3 {
		t.Fatalf("usage %d after rename, want 3", b.Usage())
	}
	mt := time.Date(2000, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := b.SetModTime(ctx, 2, mt); err != nil {
		t.Fatal(err)
	}
	info, _ := b.Stat(ctx, 2)
	if !info.ModTime.Equal(mt) {
		t.Fatalf("mtime %v, want %v", info.ModTime, mt)
	}
}

func TestIndexRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hot.db")
	b := mustOpen(t, path)
	x := b.Index()
	in := segment.Info{ID: 1<<64 - 1, Size: 12345, ModTime: time.Unix(100, 5).UTC(), WrittenAt: time.Unix(200, 0).UTC(),
		Version: `"etag-1"`, StoredSize: 99, Compression: "zstd", Sums: segment.Sum([]byte("x"))}
	if err := x.Put(in); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = mustOpen(t, path)
	defer b.Close()
	got, ok, err := b.Index().Get(in.ID)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if got.Size != in.Size || !got.ModTime.Equal(in.ModTime) || got.Version != in.Version || got.StoredSize != 99 ||
		got.Compression != "zstd" || !got.Sums.Equal(in.Sums) || got.Tier != segment.TierCold || !got.WrittenAt.Equal(in.WrittenAt) {
		t.Fatalf("round trip: %+v", got)
	}
}

func FuzzChunkRanges(f *testing.F) {
	f.Add(int64(0), int64(10), int64(3*segment.BlockSize))
	f.Add(int64(segment.BlockSize-1), int64(2), int64(segment.BlockSize+1))
	f.Add(int64(5), int64(-1), int64(7))
	b, err := Open(filepath.Join(f.TempDir(), "hot.db"), Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	data := backendtest.RandomBytes(9, 3*segment.BlockSize+77)
	if _, err := b.Put(context.Background(), 1, bytes.NewReader(data), backend.PutOptions{Size: -1}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, off, length, _ int64) {
		if off < 0 {
			off = -off
		}
		off %= int64(len(data)) + 10
		if length < -1 {
			length = -length
		}
		length %= int64(len(data)) + 10
		r, err := b.Get(context.Background(), 1, backend.GetOptions{Offset: off, Length: length})
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		n := int64(len(data))
		lo, hi := min(off, n), n
		if length >= 0 {
			hi = min(off+length, n)
		}
		if hi < lo {
			hi = lo
		}
		if !bytes.Equal(got, data[lo:hi]) {
			t.Fatalf("range %d+%d: %d bytes differ from expected %d", off, length, len(got), hi-lo)
		}
	})
}

func BenchmarkLocal(b *testing.B) {
	backendtest.RunBenchmarks(b, func(b *testing.B) backend.Backend {
		be, err := Open(filepath.Join(b.TempDir(), "hot.db"), Options{})
		if err != nil {
			b.Fatal(err)
		}
		return be
	})
}

// TestCompact: after segments leave, compaction shrinks the file and keeps
// what remains intact; it refuses while the file is in use.
func TestCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hot.db")
	b := mustOpen(t, path)
	ctx := context.Background()
	keep := backendtest.RandomBytes(1, 3<<20)
	if _, err := b.Put(ctx, 1, bytes.NewReader(keep), backend.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	for id := segment.ID(2); id < 10; id++ {
		if _, err := b.Put(ctx, id, bytes.NewReader(backendtest.RandomBytes(int64(id), 8<<20)), backend.PutOptions{Size: -1}); err != nil {
			t.Fatal(err)
		}
	}
	for id := segment.ID(2); id < 10; id++ {
		if err := b.Delete(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := Compact(path, 100*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Fatalf("compact while open: %v, want ErrLocked", err)
	}
	b.Close()
	before, after, err := Compact(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if after >= before/2 {
		t.Fatalf("compaction: %d -> %d bytes", before, after)
	}
	t.Logf("compacted %d -> %d bytes", before, after)
	c := mustOpen(t, path)
	defer c.Close()
	r, err := c.Get(ctx, 1, backend.Whole)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, keep) {
		t.Fatal("segment changed by compaction")
	}
	if ids := 0; c.List(ctx, func(segment.Info) error { ids++; return nil }) != nil || ids != 1 {
		t.Fatalf("listing after compaction: %d segments", ids)
	}
}

// TestPinRacesOverwrite: readers pinning and reading while a writer keeps
// overwriting the segment (and the GC keeps freeing old generations) never
// see a missing chunk or a mix of two versions.
func TestPinRacesOverwrite(t *testing.T) {
	b := mustOpen(t, filepath.Join(t.TempDir(), "hot.db"))
	defer b.Close()
	ctx := context.Background()
	version := func(v byte) []byte { return bytes.Repeat([]byte{v}, 2*segment.BlockSize+int(v)) }
	if _, err := b.Put(ctx, 1, bytes.NewReader(version(0)), backend.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		for v := byte(1); ; v++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			if _, err := b.Put(ctx, 1, bytes.NewReader(version(v)), backend.PutOptions{Size: -1}); err != nil {
				writerDone <- err
				return
			}
		}
	}()
	deadline := time.Now().Add(2 * time.Second)
	reads := 0
	for time.Now().Before(deadline) {
		info, release, err := b.PinCurrent(1)
		if err != nil {
			t.Fatalf("pin: %v", err)
		}
		got := make([]byte, info.Size)
		n, err := b.ReadAt(info.Version, got, 0)
		release()
		if int64(n) != info.Size || (err != nil && err != io.EOF) {
			t.Fatalf("read of pinned version %s: %d of %d bytes, %v", info.Version, n, info.Size, err)
		}
		if !bytes.Equal(got, version(got[0])) {
			t.Fatalf("pinned read mixes versions (first byte %d, %d bytes)", got[0], len(got))
		}
		reads++
	}
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pinned reads during overwrites", reads)
}
