package tier

// Deterministic tests of the segment state machine: each holds one
// operation of the store in flight (an upload, a listing, a cold delete)
// while another runs, the interleavings that once lost or resurrected data.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/backend/mem"
	"github.com/scribefs/scribefs/cache"
	"github.com/scribefs/scribefs/segment"
)

// hooked is a cold tier (an in-memory bucket, or a real one on MinIO)
// whose calls can be held in flight or failed by a test.
type hooked struct {
	backend.Backend
	mu           sync.Mutex
	afterPut     func(id segment.ID)       // object stored, Put not yet returned
	beforeDelete func(id segment.ID) error // before the object is removed
	beforeEntry  func(id segment.ID)       // listing: entry read, not yet handed on
	beforeStat   func(id segment.ID) error
	unresolved   bool // listings cannot tell sizes (Scribe objects with sidecars)
	down         atomic.Bool
	puts         atomic.Int64
}

func (h *hooked) hooks() (func(segment.ID), func(segment.ID) error, func(segment.ID), func(segment.ID) error, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.afterPut, h.beforeDelete, h.beforeEntry, h.beforeStat, h.unresolved
}

func (h *hooked) set(fn func(h *hooked)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn(h)
}

func (h *hooked) check() error {
	if h.down.Load() {
		return backend.ErrUnavailable
	}
	return nil
}

func (h *hooked) Put(ctx context.Context, id segment.ID, r io.Reader, o backend.PutOptions) (segment.Info, error) {
	if err := h.check(); err != nil {
		return segment.Info{}, err
	}
	info, err := h.Backend.Put(ctx, id, r, o)
	h.puts.Add(1)
	if after, _, _, _, _ := h.hooks(); after != nil && err == nil {
		after(id)
	}
	return info, err
}

func (h *hooked) Get(ctx context.Context, id segment.ID, o backend.GetOptions) (io.ReadCloser, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	return h.Backend.Get(ctx, id, o)
}

func (h *hooked) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	if err := h.check(); err != nil {
		return segment.Info{}, err
	}
	if _, _, _, before, _ := h.hooks(); before != nil {
		if err := before(id); err != nil {
			return segment.Info{}, err
		}
	}
	return h.Backend.Stat(ctx, id)
}

func (h *hooked) Delete(ctx context.Context, id segment.ID, v string) error {
	if err := h.check(); err != nil {
		return err
	}
	if _, before, _, _, _ := h.hooks(); before != nil {
		if err := before(id); err != nil {
			return err
		}
	}
	return h.Backend.Delete(ctx, id, v)
}

func (h *hooked) List(ctx context.Context, fn func(segment.Info) error) error {
	if err := h.check(); err != nil {
		return err
	}
	return h.Backend.List(ctx, func(i segment.Info) error {
		_, _, before, _, unresolved := h.hooks()
		if before != nil {
			before(i.ID)
		}
		i.Unresolved = unresolved
		return fn(i)
	})
}

// Objects returns every object's bytes, read straight from the bucket.
func (h *hooked) Objects() map[segment.ID][]byte {
	out := map[segment.ID][]byte{}
	h.Backend.List(ctx, func(i segment.Info) error {
		r, err := h.Backend.Get(ctx, i.ID, backend.Whole)
		if err != nil {
			return nil // deleted since the listing
		}
		defer r.Close()
		if b, err := io.ReadAll(r); err == nil {
			out[i.ID] = b
		}
		return nil
	})
	return out
}

// foreignPut stores an object in the bucket as another program would.
func (h *hooked) foreignPut(t *testing.T, id segment.ID, data []byte) {
	t.Helper()
	if _, err := h.Backend.Put(ctx, id, bytes.NewReader(data), backend.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
}

// hold parks the first caller that reaches it until release.
type hold struct {
	once     sync.Once
	entered  chan struct{}
	released chan struct{}
}

func newHold() *hold { return &hold{entered: make(chan struct{}), released: make(chan struct{})} }

// park blocks the first caller until release; later callers pass.
func (h *hold) park() {
	first := false
	h.once.Do(func() { first = true; close(h.entered) })
	if first {
		<-h.released
	}
}

func (h *hold) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the held operation never started")
	}
}

func (h *hold) release() {
	select {
	case <-h.released:
	default:
		close(h.released)
	}
}

// async runs fn in a goroutine; the returned channel yields its error.
func async(fn func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	return ch
}

// within waits for an async result; ok is false after d.
func within(ch <-chan error, d time.Duration) (err error, ok bool) {
	select {
	case err := <-ch:
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

func mustWait(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	err, ok := within(ch, 20*time.Second)
	if !ok {
		t.Fatalf("%s did not finish", what)
	}
	return err
}

func mustTiered(t *testing.T, cfg Config) (*Store, *hooked, *local.Backend) {
	t.Helper()
	hot, err := local.Open(filepath.Join(t.TempDir(), "hot.db"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cold := &hooked{Backend: mem.New(segment.TierCold)}
	s, err := New(hot, hot.Index(), cold, cache.New(64<<20), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hot.Close() })
	return s, cold, hot
}

// mustBeGone checks that id is gone for readers and listings, and stays
// gone once the store has reconciled with the bucket and replayed its
// deferred deletes, which also leave no object behind.
func mustBeGone(t *testing.T, s *Store, cold *hooked, id segment.ID) {
	t.Helper()
	check := func(when string) {
		t.Helper()
		if info, err := s.Stat(ctx, id); !errors.Is(err, backend.ErrNotFound) {
			t.Fatalf("%s: segment %d: stat gives %+v, %v; want not found", when, id, info, err)
		}
		if _, ok := listed(t, s)[id]; ok {
			t.Fatalf("%s: segment %d is listed", when, id)
		}
	}
	check("at once")
	if _, err := s.ReplayTombstones(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	check("after replay and reconcile")
	if _, ok := cold.Objects()[id]; ok {
		t.Fatalf("segment %d: the bucket still holds an object", id)
	}
}

// Scenario 1: rm while the segment's upload is in flight.
func TestRmDuringArchiveStaysDeleted(t *testing.T) {
	s, cold, _ := mustTiered(t, Config{})
	mustPut(t, s, 1, []byte("one"))
	h := newHold()
	cold.set(func(c *hooked) { c.afterPut = func(segment.ID) { h.park() } })
	archived := async(func() error { return s.Archive(ctx, 1) })
	h.waitEntered(t)
	deleted := async(func() error { return s.Delete(ctx, 1) })
	err, ok := within(deleted, 5*time.Second)
	h.release()
	if !ok {
		err = mustWait(t, "rm", deleted)
	}
	if err != nil {
		t.Fatalf("rm during archival: %v", err)
	}
	mustWait(t, "archive", archived)
	mustBeGone(t, s, cold, 1)
}

// Scenario 1, with mv: the source must not come back.
func TestRenameDuringArchiveStaysRenamed(t *testing.T) {
	s, cold, _ := mustTiered(t, Config{})
	mustPut(t, s, 1, []byte("one"))
	h := newHold()
	cold.set(func(c *hooked) { c.afterPut = func(segment.ID) { h.park() } })
	archived := async(func() error { return s.Archive(ctx, 1) })
	h.waitEntered(t)
	renamed := async(func() error { return s.Rename(ctx, 1, 2) })
	err, ok := within(renamed, 5*time.Second)
	h.release()
	if !ok {
		err = mustWait(t, "mv", renamed)
	}
	if err != nil {
		t.Fatalf("mv during archival: %v", err)
	}
	mustWait(t, "archive", archived)
	mustBeGone(t, s, cold, 1)
	if got := mustRead(t, s, 2); string(got) != "one" {
		t.Fatalf("segment 2 reads %q, want %q", got, "one")
	}
}

// Scenario 2: a replay holding an old tombstone must not delete a version
// written and archived after it.
func TestReplayedTombstoneSparesNewerVersion(t *testing.T) {
	s, cold, _ := mustTiered(t, Config{})
	cold.foreignPut(t, 1, []byte("old"))
	mustPut(t, s, 1, []byte("v1"))
	cold.down.Store(true)
	if err := s.Delete(ctx, 1); err != nil {
		t.Fatalf("rm while S3 is down: %v", err)
	}
	cold.down.Store(false)
	h := newHold()
	cold.set(func(c *hooked) {
		c.beforeDelete = func(segment.ID) error { h.park(); return nil }
	})
	replayed := async(func() error { _, err := s.ReplayTombstones(ctx); return err })
	h.waitEntered(t)
	mustPut(t, s, 1, []byte("v2"))
	puts := cold.puts.Load()
	archived := async(func() error { return s.Archive(ctx, 1) })
	for start := time.Now(); cold.puts.Load() == puts && time.Since(start) < 500*time.Millisecond; {
		time.Sleep(5 * time.Millisecond)
	}
	h.release()
	if err := mustWait(t, "replay", replayed); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if err := mustWait(t, "archive", archived); err != nil {
		t.Fatalf("archive: %v", err)
	}
	if got := mustRead(t, s, 1); string(got) != "v2" {
		t.Fatalf("segment 1 reads %q, want v2", got)
	}
	if got := cold.Objects()[1]; string(got) != "v2" {
		t.Fatalf("bucket holds %q for segment 1, want v2", got)
	}
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, s, 1); string(got) != "v2" {
		t.Fatalf("after reconcile segment 1 reads %q, want v2", got)
	}
}

// manyCold fills the bucket with n small objects 1..n and indexes them.
func manyCold(t *testing.T, s *Store, cold *hooked, n int) {
	t.Helper()
	for id := segment.ID(1); id <= segment.ID(n); id++ {
		cold.foreignPut(t, id, []byte(id.String()))
	}
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
}

// Scenario 3: rm while a reconcile pass that already listed the segment
// is running.
func TestRmDuringReconcileStaysDeleted(t *testing.T) {
	s, cold, _ := mustTiered(t, Config{})
	manyCold(t, s, cold, 3000)
	// The listing (a snapshot) holds the victim; the index batch that holds
	// it (the second: 1000 entries a batch) is read after the rm.
	const victim = 1001
	h := newHold()
	cold.set(func(c *hooked) {
		c.beforeEntry = func(id segment.ID) {
			if id == victim-1 {
				h.park()
			}
		}
	})
	reconciled := async(func() error { return s.Reconcile(ctx) })
	h.waitEntered(t)
	if err := s.Delete(ctx, victim); err != nil {
		t.Fatalf("rm during reconcile: %v", err)
	}
	h.release()
	if err := mustWait(t, "reconcile", reconciled); err != nil {
		t.Fatal(err)
	}
	cold.set(func(c *hooked) { c.beforeEntry = nil })
	mustBeGone(t, s, cold, victim)
}

// Scenario 4: an archive that completes after the listing passed its key.
func TestArchiveDuringReconcileKeepsSegment(t *testing.T) {
	s, cold, _ := mustTiered(t, Config{})
	manyCold(t, s, cold, 10)
	mustPut(t, s, 20, []byte("twenty"))
	h := newHold()
	cold.set(func(c *hooked) {
		c.beforeEntry = func(id segment.ID) {
			if id == 10 {
				h.park()
			}
		}
	})
	reconciled := async(func() error { return s.Reconcile(ctx) })
	h.waitEntered(t)
	if err := s.Archive(ctx, 20); err != nil {
		t.Fatal(err)
	}
	h.release()
	if err := mustWait(t, "reconcile", reconciled); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, s, 20); string(got) != "twenty" {
		t.Fatalf("segment 20 reads %q", got)
	}
}

// Scenario 4, second form: a listed entry must not overwrite the newer
// one archival recorded meanwhile.
func TestReconcileSparesNewerArchivedEntry(t *testing.T) {
	s, cold, _ := mustTiered(t, Config{})
	cold.foreignPut(t, 5, []byte("old"))
	cold.foreignPut(t, 6, []byte("six"))
	h := newHold()
	cold.set(func(c *hooked) {
		c.beforeEntry = func(id segment.ID) {
			if id == 6 {
				h.park()
			}
		}
	})
	reconciled := async(func() error { return s.Reconcile(ctx) })
	h.waitEntered(t)
	mustPut(t, s, 5, []byte("new"))
	if err := s.Archive(ctx, 5); err != nil {
		t.Fatal(err)
	}
	h.release()
	if err := mustWait(t, "reconcile", reconciled); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(ctx, 5)
	if err != nil {
		t.Fatalf("open 5: %v", err)
	}
	defer r.Close()
	got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Info().Size))
	if err != nil || string(got) != "new" {
		t.Fatalf("segment 5 reads %q, %v; want %q", got, err, "new")
	}
}

// Scenario 5: a cold delete that fails must leave the current version.
func TestFailedRmKeepsCurrentVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(s *Store, cold *hooked)
	}{
		{"denied", func(s *Store, cold *hooked) {
			cold.set(func(c *hooked) {
				c.beforeDelete = func(segment.ID) error { return backend.ErrPermission }
			})
		}},
		{"fenced", func(s *Store, cold *hooked) { s.Fence(errors.New("lease taken over")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, cold, _ := mustTiered(t, Config{})
			mustPut(t, s, 1, []byte("v0"))
			if err := s.Archive(ctx, 1); err != nil {
				t.Fatal(err)
			}
			mustPut(t, s, 1, []byte("v1"))
			tc.fail(s, cold)
			if err := s.Delete(ctx, 1); err == nil {
				t.Fatal("rm succeeded although the cold delete failed")
			}
			if got := mustRead(t, s, 1); string(got) != "v1" {
				t.Fatalf("after a failed rm segment 1 reads %q, want v1", got)
			}
		})
	}
}

// Scenario 6: rm during an outage of a segment whose cold entry is
// unresolved must not bring the old bytes back when S3 returns.
func TestRmDuringOutageOfUnresolvedEntry(t *testing.T) {
	s, cold, _ := mustTiered(t, Config{})
	cold.set(func(c *hooked) {
		c.unresolved = true
		c.beforeStat = func(segment.ID) error { return backend.ErrUnavailable }
	})
	cold.foreignPut(t, 1, []byte("old bytes"))
	s.Reconcile(ctx) // the entry stays unresolved: stat fails
	mustPut(t, s, 1, []byte("new"))
	cold.down.Store(true)
	if err := s.Delete(ctx, 1); err != nil {
		t.Fatalf("rm during the outage: %v", err)
	}
	cold.down.Store(false)
	cold.set(func(c *hooked) { c.beforeStat = nil })
	if info, err := s.Stat(ctx, 1); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("after the outage: stat gives %+v, %v; want not found", info, err)
	}
	mustBeGone(t, s, cold, 1)
}

// Scenario 7: with write-through, a write that lands while the previous
// version is uploading returns only once its own version is in S3.
func TestWriteThroughWaitsForInflightUpload(t *testing.T) {
	s, cold, _ := mustTiered(t, Config{WriteThrough: true})
	h := newHold()
	cold.set(func(c *hooked) { c.afterPut = func(segment.ID) { h.park() } })
	first := async(func() error { _, err := s.Put(ctx, 1, bytes.NewReader([]byte("v1")), 2, time.Time{}); return err })
	h.waitEntered(t)
	second := async(func() error { _, err := s.Put(ctx, 1, bytes.NewReader([]byte("v2")), 2, time.Time{}); return err })
	if err, done := within(second, 300*time.Millisecond); done {
		if err != nil {
			t.Fatalf("second write: %v", err)
		}
		if got := cold.Objects()[1]; string(got) != "v2" {
			h.release()
			t.Fatalf("second write returned while S3 holds %q, not its version", got)
		}
	}
	h.release()
	for _, ch := range []<-chan error{first, second} {
		if err := mustWait(t, "write", ch); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	if got := cold.Objects()[1]; string(got) != "v2" {
		t.Fatalf("S3 holds %q, want v2", got)
	}
	if got := mustRead(t, s, 1); string(got) != "v2" {
		t.Fatalf("segment 1 reads %q, want v2", got)
	}
}
