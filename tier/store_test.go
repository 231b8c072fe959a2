package tier

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/cache"
	"github.com/scribefs/scribefs/segment"
)

var ctx = context.Background()

// faulty wraps a cold backend: it can fail every call as unavailable and
// flip a byte in every body it returns.
type faulty struct {
	backend.Backend
	down    atomic.Bool
	corrupt atomic.Bool
	gets    atomic.Int64
}

func (f *faulty) check() error {
	if f.down.Load() {
		return backend.ErrUnavailable
	}
	return nil
}
func (f *faulty) Put(ctx context.Context, id segment.ID, r io.Reader, o backend.PutOptions) (segment.Info, error) {
	if err := f.check(); err != nil {
		return segment.Info{}, err
	}
	info, err := f.Backend.Put(ctx, id, r, o)
	info.Tier = segment.TierCold
	return info, err
}
func (f *faulty) Get(ctx context.Context, id segment.ID, o backend.GetOptions) (io.ReadCloser, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	f.gets.Add(1)
	r, err := f.Backend.Get(ctx, id, o)
	if err != nil || !f.corrupt.Load() {
		return r, err
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if len(b) > 0 {
		b[len(b)/2] ^= 0xff
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}
func (f *faulty) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	if err := f.check(); err != nil {
		return segment.Info{}, err
	}
	info, err := f.Backend.Stat(ctx, id)
	info.Tier = segment.TierCold
	return info, err
}
func (f *faulty) Delete(ctx context.Context, id segment.ID, v string) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.Backend.Delete(ctx, id, v)
}
func (f *faulty) List(ctx context.Context, fn func(segment.Info) error) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.Backend.List(ctx, func(i segment.Info) error { i.Tier = segment.TierCold; return fn(i) })
}

func mustStore(t *testing.T, cfg Config) (*Store, *faulty) {
	t.Helper()
	dir := t.TempDir()
	hot, err := local.Open(filepath.Join(dir, "hot.db"), local.Options{Now: cfg.Now})
	if err != nil {
		t.Fatal(err)
	}
	coldDB, err := local.Open(filepath.Join(dir, "cold.db"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cold := &faulty{Backend: coldDB}
	s, err := New(hot, hot.Index(), cold, cache.New(64<<20), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hot.Close(); coldDB.Close() })
	return s, cold
}

func mustRead(t *testing.T, s *Store, id segment.ID) []byte {
	t.Helper()
	r, err := s.Open(ctx, id)
	if err != nil {
		t.Fatalf("open %d: %v", id, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.NewSectionReader(r, 0, r.Info().Size))
	if err != nil {
		t.Fatalf("read %d: %v", id, err)
	}
	return b
}

func mustPut(t *testing.T, s *Store, id segment.ID, b []byte) {
	t.Helper()
	if _, err := s.Put(ctx, id, bytes.NewReader(b), int64(len(b)), time.Time{}); err != nil {
		t.Fatalf("put %d: %v", id, err)
	}
}

func listed(t *testing.T, s *Store) map[segment.ID]segment.Tier {
	t.Helper()
	out := map[segment.ID]segment.Tier{}
	var last segment.ID
	err := s.List(ctx, func(i segment.Info) error {
		if len(out) > 0 && i.ID <= last {
			t.Fatalf("list not ascending: %d after %d", i.ID, last)
		}
		last = i.ID
		out[i.ID] = i.Tier
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestArchiveReadDelete(t *testing.T) {
	s, cold := mustStore(t, Config{})
	data := backendtest.RandomBytes(1, 20<<20+3)
	mustPut(t, s, 42, data)
	mustPut(t, s, 7, []byte("hot one"))
	if err := s.Archive(ctx, 42); err != nil {
		t.Fatal(err)
	}
	info, err := s.Stat(ctx, 42)
	if err != nil || info.Tier != segment.TierCold || info.Size != int64(len(data)) || info.Sums == nil {
		t.Fatalf("stat after archive: %+v %v", info, err)
	}
	if got := mustRead(t, s, 42); !bytes.Equal(got, data) {
		t.Fatal("cold read differs")
	}
	gets := cold.gets.Load()
	if got := mustRead(t, s, 42); !bytes.Equal(got, data) {
		t.Fatal("cached read differs")
	}
	if cold.gets.Load() != gets {
		t.Fatalf("second read fetched %d more times from cold; want cache hits", cold.gets.Load()-gets)
	}
	if l := listed(t, s); len(l) != 2 || l[42] != segment.TierCold || l[7] != segment.TierHot {
		t.Fatalf("list: %v", l)
	}
	if err := s.Delete(ctx, 42); err != nil {
		t.Fatal(err)
	}
	if _, err := cold.Backend.Stat(ctx, 42); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("cold copy after delete: %v", err)
	}
	if _, err := s.Stat(ctx, 42); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat after delete: %v", err)
	}
}

// TestRangeReadFetchesLittle: a 4 KiB read in the middle of a large cold
// segment fetches a block or a few, not the object.
func TestRangeReadFetchesLittle(t *testing.T) {
	s, _ := mustStore(t, Config{})
	data := backendtest.RandomBytes(2, 40<<20)
	mustPut(t, s, 1, data)
	if err := s.Archive(ctx, 1); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 4096)
	off := int64(25<<20 + 100)
	if _, err := r.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, data[off:off+4096]) {
		t.Fatal("range read differs")
	}
	if got := s.Stats(ctx).ColdFetchBytes; got > 2*segment.BlockSize {
		t.Fatalf("4 KiB read fetched %d bytes", got)
	}
}

func TestCorruptColdDataIsAnError(t *testing.T) {
	s, cold := mustStore(t, Config{})
	mustPut(t, s, 5, backendtest.RandomBytes(3, 3<<20))
	if err := s.Archive(ctx, 5); err != nil {
		t.Fatal(err)
	}
	cold.corrupt.Store(true)
	r, err := s.Open(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.ReadAt(make([]byte, 100), 2<<20)
	if !errors.Is(err, segment.ErrChecksum) {
		t.Fatalf("read of corrupted block: %v, want ErrChecksum", err)
	}
}

// TestOutageTombstone: a delete while the cold tier is down hides the
// segment at once, survives reconciliation, and is carried out later.
func TestOutageTombstone(t *testing.T) {
	s, cold := mustStore(t, Config{})
	mustPut(t, s, 9, []byte("nine"))
	if err := s.Archive(ctx, 9); err != nil {
		t.Fatal(err)
	}
	cold.down.Store(true)
	if err := s.Delete(ctx, 9); err != nil {
		t.Fatalf("delete during outage: %v", err)
	}
	mustPut(t, s, 10, []byte("hot writes still work"))
	if _, err := s.Stat(ctx, 9); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat of deleted during outage: %v", err)
	}
	cold.down.Store(false)
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := listed(t, s)[9]; ok {
		t.Fatal("reconcile brought a deleted segment back")
	}
	if n, err := s.ReplayTombstones(ctx); err != nil || n != 1 {
		t.Fatalf("replay: %d %v", n, err)
	}
	if _, err := cold.Backend.Stat(ctx, 9); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("cold copy after replay: %v", err)
	}
}

func TestOverwriteAfterArchiveAndRename(t *testing.T) {
	s, _ := mustStore(t, Config{})
	mustPut(t, s, 1, []byte("old"))
	if err := s.Archive(ctx, 1); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, 1, []byte("newer"))
	if got := mustRead(t, s, 1); string(got) != "newer" {
		t.Fatalf("read %q after overwrite of archived", got)
	}
	if err := s.Archive(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, s, 1); string(got) != "newer" {
		t.Fatalf("read %q after re-archive", got)
	}
	if err := s.Rename(ctx, 1, 2); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, s, 2); string(got) != "newer" {
		t.Fatalf("renamed read %q", got)
	}
	if l := listed(t, s); len(l) != 1 {
		t.Fatalf("after rename of cold segment: %v", l)
	}
}

func TestMaxSegmentBytes(t *testing.T) {
	s, _ := mustStore(t, Config{MaxSegmentBytes: 1000})
	_, err := s.Put(ctx, 1, bytes.NewReader(make([]byte, 1001)), -1, time.Time{})
	if !errors.Is(err, backend.ErrTooLarge) {
		t.Fatalf("oversized put: %v", err)
	}
	if _, err := s.Stat(ctx, 1); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("oversized put left something: %v", err)
	}
}

func TestWriteThrough(t *testing.T) {
	s, cold := mustStore(t, Config{WriteThrough: true})
	mustPut(t, s, 3, []byte("durable in cold"))
	if _, err := cold.Backend.Stat(ctx, 3); err != nil {
		t.Fatalf("write-through: cold stat %v", err)
	}
	if s.Stats(ctx).HotBytes != 0 {
		t.Fatalf("write-through left %d hot bytes", s.Stats(ctx).HotBytes)
	}
}

// TestPrefetchFollowingSegments: cold segments opened in id order (sparse
// ids included) get the next ones prefetched, each with one GET, and read
// back from the cache; opens out of order prefetch nothing; large and hot
// segments are not prefetched.
func TestPrefetchFollowingSegments(t *testing.T) {
	s, cold := mustStore(t, Config{PrefetchSegments: 2})
	ids := []segment.ID{10, 20, 21, 40, 50, 60, 70}
	want := map[segment.ID][]byte{}
	for i, id := range ids {
		data := backendtest.RandomBytes(int64(i), 64<<10+int64(i))
		if id == 50 {
			data = backendtest.RandomBytes(9, 9<<20) // more than a fetch span
		}
		want[id] = data
		mustPut(t, s, id, data)
		if err := s.Archive(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	mustPut(t, s, 60, want[60]) // 60 is hot again: read locally
	wait := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			s.fetch.mu.Lock()
			n := len(s.fetch.inflight)
			s.fetch.mu.Unlock()
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("prefetches still in flight")
			}
			time.Sleep(time.Millisecond)
		}
	}
	read := func(id segment.ID) {
		t.Helper()
		if got := mustRead(t, s, id); !bytes.Equal(got, want[id]) {
			t.Fatalf("segment %d differs", id)
		}
		wait()
	}

	// Out of order: no prefetch.
	read(70)
	read(10)
	if got := cold.gets.Load(); got != 2 {
		t.Fatalf("%d GETs for two reads out of order, want 2", got)
	}
	// 10 then 20, the next in the index: 21 and 40 are prefetched.
	read(20)
	if got := cold.gets.Load(); got != 5 {
		t.Fatalf("%d GETs after reading 10 and 20 in order, want 5 (20, and 21 and 40 ahead)", got)
	}
	read(21)
	read(40)
	// 21 prefetched nothing new but 50 (too large: skipped); 40 reached 60
	// (hot: skipped). Reading 21 and 40 came from the cache.
	if got := cold.gets.Load(); got != 5 {
		t.Fatalf("%d GETs after reading 21 and 40, want still 5", got)
	}

	// Disabled: nothing ahead.
	s2, cold2 := mustStore(t, Config{})
	for _, id := range []segment.ID{1, 2, 3} {
		mustPut(t, s2, id, []byte("small"))
		if err := s2.Archive(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	mustRead(t, s2, 1)
	mustRead(t, s2, 2)
	if got := cold2.gets.Load(); got != 2 {
		t.Fatalf("%d GETs with prefetching disabled, want 2", got)
	}
}
