package tier

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// The fence (the writer lease, seen from the store): it stops changes to
// the cold tier when they start, again before an archive commits and before
// each delete is sent, cancels those in flight, and closes by itself at the
// deadline the lease keeper gives (AllowColdUntil).

// inFlight is a cold tier whose writes wait in flight, as over a slow or
// partitioned network, until their context ends or the test lets them go;
// sent counts the writes that reached the bucket.
type inFlight struct {
	backend.Backend
	entered chan segment.ID // a write is in flight
	proceed chan struct{}   // closed: writes in flight go on
	hold    atomic.Bool     // writes wait
	sent    atomic.Int64
}

func newInFlight(s *Store) *inFlight {
	f := &inFlight{Backend: s.cold, entered: make(chan segment.ID, 16), proceed: make(chan struct{})}
	s.cold = f
	return f
}

func (f *inFlight) wait(ctx context.Context, id segment.ID) error {
	if !f.hold.Load() {
		return nil
	}
	f.entered <- id
	select {
	case <-ctx.Done():
		return errors.Join(backend.ErrUnavailable, ctx.Err())
	case <-f.proceed:
		return nil
	case <-time.After(10 * time.Second):
		return nil // never cancelled: the write goes through, as before the fix
	}
}

func (f *inFlight) Put(ctx context.Context, id segment.ID, r io.Reader, o backend.PutOptions) (segment.Info, error) {
	if err := f.wait(ctx, id); err != nil {
		return segment.Info{}, err
	}
	f.sent.Add(1)
	return f.Backend.Put(ctx, id, r, o)
}

func (f *inFlight) Delete(ctx context.Context, id segment.ID, v string) error {
	if err := f.wait(ctx, id); err != nil {
		return err
	}
	f.sent.Add(1)
	return f.Backend.Delete(ctx, id, v)
}

func waitEntered(t *testing.T, f *inFlight) {
	t.Helper()
	select {
	case <-f.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no write went in flight")
	}
}

// An upload in flight when the lease is lost is cancelled: nothing reaches
// the bucket, the segment stays hot, and archive says why.
func TestFenceCancelsUploadInFlight(t *testing.T) {
	s, cold, _ := mustTiered(t, Config{})
	mustPut(t, s, 1, []byte("one"))
	f := newInFlight(s)
	f.hold.Store(true)
	archived := async(func() error { return s.Archive(ctx, 1) })
	waitEntered(t, f)
	s.Fence(errors.New("lease taken over by host-b"))
	err, ok := within(archived, 5*time.Second)
	if !ok {
		err = mustWait(t, "archive", archived)
		t.Fatalf("the upload in flight was not cancelled by the fence (archive returned %v only after the write went through)", err)
	}
	if !errors.Is(err, backend.ErrReadOnly) || f.sent.Load() != 0 {
		t.Fatalf("archive while fenced in flight: %v, %d writes sent; want a fence error and none", err, f.sent.Load())
	}
	if _, ok := cold.Objects()[1]; ok {
		t.Fatal("the bucket holds the upload cancelled by the fence")
	}
	if info, err := s.Stat(ctx, 1); err != nil || info.Tier != segment.TierHot {
		t.Fatalf("segment after the cancelled upload: %+v %v; want hot", info, err)
	}
	close(f.proceed)
	s.Unfence()
	mustArchive(t, s, 1)
	if got := mustRead(t, s, 1); string(got) != "one" {
		t.Fatalf("after unfence and archive: %q", got)
	}
}

// The fence comes down after the upload finished but before the archive
// commits: no commit, the hot copy stays (the next holder may already have
// changed the object).
func TestFenceCheckedBeforeArchiveCommits(t *testing.T) {
	s, cold, _ := mustTiered(t, Config{})
	mustPut(t, s, 1, []byte("one"))
	cold.set(func(c *hooked) {
		c.afterPut = func(segment.ID) { s.Fence(errors.New("lease taken over by host-b")) }
	})
	if err := s.Archive(ctx, 1); !errors.Is(err, backend.ErrReadOnly) {
		t.Fatalf("archive fenced before its commit: %v, want a fence error", err)
	}
	if info, err := s.Stat(ctx, 1); err != nil || info.Tier != segment.TierHot {
		t.Fatalf("segment after an archive fenced before its commit: %+v %v; want still hot", info, err)
	}
	if rec, _ := s.index.Record(1); rec.Hot == nil || !rec.Uploading {
		t.Fatalf("record %+v: want the hot copy and U set", rec)
	}
}

// A replay of deferred deletes in flight when the lease is lost: the delete
// being sent is cancelled and no further one is sent.
func TestFenceCancelsReplayInFlight(t *testing.T) {
	s, cold, _ := mustTiered(t, Config{})
	for id := segment.ID(1); id <= 3; id++ {
		mustPut(t, s, id, []byte("x"))
		mustArchive(t, s, id)
	}
	cold.down.Store(true)
	for id := segment.ID(1); id <= 3; id++ {
		if err := s.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	cold.down.Store(false)
	f := newInFlight(s)
	f.hold.Store(true)
	replayed := async(func() error { _, err := s.ReplayTombstones(ctx); return err })
	waitEntered(t, f)
	s.Fence(errors.New("lease taken over by host-b"))
	err, ok := within(replayed, 5*time.Second)
	if !ok {
		mustWait(t, "replay", replayed)
		t.Fatalf("the replay in flight was not cancelled by the fence: %d deletes sent", f.sent.Load())
	}
	if f.sent.Load() != 0 || !errors.Is(err, backend.ErrReadOnly) {
		t.Fatalf("replay fenced in flight: %v, %d deletes sent; want a fence error and none", err, f.sent.Load())
	}
	if n := len(cold.Objects()); n != 3 {
		t.Fatalf("%d objects left, want all 3 (their deletes wait for the lease)", n)
	}
}

// An rm whose cold delete is in flight when the lease is lost fails and
// leaves the segment as it was.
func TestFenceCancelsDeleteInFlight(t *testing.T) {
	s, _, _ := mustTiered(t, Config{})
	mustPut(t, s, 1, []byte("one"))
	mustArchive(t, s, 1)
	f := newInFlight(s)
	f.hold.Store(true)
	deleted := async(func() error { return s.Delete(ctx, 1) })
	waitEntered(t, f)
	s.Fence(errors.New("lease taken over by host-b"))
	err, ok := within(deleted, 5*time.Second)
	if !ok {
		mustWait(t, "rm", deleted)
		t.Fatal("the cold delete in flight was not cancelled by the fence")
	}
	if !errors.Is(err, backend.ErrReadOnly) || f.sent.Load() != 0 {
		t.Fatalf("rm fenced in flight: %v, %d deletes sent", err, f.sent.Load())
	}
	if got := mustRead(t, s, 1); string(got) != "one" {
		t.Fatalf("segment after the failed rm: %q", got)
	}
}

// AllowColdUntil: once the lease's deadline has passed by the store's
// clock, every change to the cold tier is refused, even though nobody
// called Fence (the lease keeper may be late, or its renewals hang).
func TestFenceDeadlineWithoutRenewal(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Unix(1_000_000, 0).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	s, cold, _ := mustTiered(t, Config{Now: clock})
	deadline := clock().Add(90 * time.Second)
	s.AllowColdUntil(deadline)
	mustPut(t, s, 1, []byte("one"))
	mustArchive(t, s, 1) // before the deadline
	mustPut(t, s, 2, []byte("two"))
	now.Store(deadline.UnixNano())
	puts := cold.puts.Load()
	s.cfg.WriteThrough = true
	_, err := s.Put(ctx, 3, strings.NewReader("three"), 5, time.Time{})
	s.cfg.WriteThrough = false
	if !errors.Is(err, ErrNotWrittenThrough) || !errors.Is(err, backend.ErrReadOnly) {
		t.Fatalf("write-through at the deadline: %v; want stored hot, not written through (fenced)", err)
	}
	if err := s.Archive(ctx, 2); !errors.Is(err, backend.ErrReadOnly) {
		t.Fatalf("archive at the deadline: %v", err)
	}
	if err := s.Delete(ctx, 1); !errors.Is(err, backend.ErrReadOnly) {
		t.Fatalf("rm of a cold segment at the deadline: %v", err)
	}
	if got := cold.puts.Load() - puts; got != 0 {
		t.Fatalf("%d uploads after the deadline", got)
	}
	if len(cold.Objects()) != 1 {
		t.Fatalf("bucket changed after the deadline: %d objects", len(cold.Objects()))
	}
	// renewed: allowed again
	s.AllowColdUntil(clock().Add(90 * time.Second))
	mustArchive(t, s, 3)
	if err := s.Delete(ctx, 1); err != nil {
		t.Fatalf("rm after renewal: %v", err)
	}
}

// An upload in flight when the lease's deadline passes unrenewed is
// cancelled at the deadline, with no call to Fence; one whose lease is
// renewed meanwhile goes on.
func TestFenceDeadlineCancelsInFlight(t *testing.T) {
	s, cold, _ := mustTiered(t, Config{})
	mustPut(t, s, 1, []byte("one"))
	mustPut(t, s, 2, []byte("two"))
	f := newInFlight(s)
	f.hold.Store(true)
	s.AllowColdUntil(time.Now().Add(300 * time.Millisecond))
	archived := async(func() error { return s.Archive(ctx, 1) })
	waitEntered(t, f)
	err, ok := within(archived, 5*time.Second)
	if !ok {
		mustWait(t, "archive", archived)
		t.Fatal("the upload in flight went on past the lease's deadline")
	}
	if !errors.Is(err, backend.ErrReadOnly) || f.sent.Load() != 0 || len(cold.Objects()) != 0 {
		t.Fatalf("archive past the deadline: %v, %d sent, %d objects", err, f.sent.Load(), len(cold.Objects()))
	}
	// renewed while the upload is in flight: it is not cancelled
	s.AllowColdUntil(time.Now().Add(300 * time.Millisecond))
	archived = async(func() error { return s.Archive(ctx, 2) })
	waitEntered(t, f)
	s.AllowColdUntil(time.Now().Add(time.Minute))
	time.Sleep(500 * time.Millisecond) // past the first deadline
	close(f.proceed)
	if err := mustWait(t, "archive", archived); err != nil {
		t.Fatalf("archive renewed in flight: %v", err)
	}
	if _, ok := cold.Objects()[2]; !ok {
		t.Fatal("the renewed upload did not land")
	}
}
