package tier

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/segment"
)

// TestLRUArchival: over budget, the archiver moves the least recently used
// segment out first, not the oldest written.
func TestLRUArchival(t *testing.T) {
	clock := newClock()
	s, _ := mustStore(t, Config{HotMaxBytes: 3500, ArchiveAfter: time.Hour, Now: clock.now})
	for id := segment.ID(1); id <= 3; id++ {
		mustPut(t, s, id, make([]byte, 1000))
		clock.advance(time.Second)
	}
	// 1 is the oldest written, but was just read: 2 is least recently used.
	r, err := s.Open(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	// 4 does not fit (4000 bytes over a 3500 budget): one segment must go.
	mustPut(t, s, 4, make([]byte, 1000))
	for id, want := range map[segment.ID]segment.Tier{1: segment.TierHot, 2: segment.TierCold, 3: segment.TierHot, 4: segment.TierHot} {
		info, err := s.Stat(ctx, id)
		if err != nil || info.Tier != want {
			t.Fatalf("segment %d: tier %v (%v), want %v", id, info.Tier, err, want)
		}
	}
}

// TestFullHotTier: a write that does not fit waits while the archiver makes
// room; with the cold tier down as well it fails with ErrNoSpace at once,
// and nothing stored is lost.
func TestFullHotTier(t *testing.T) {
	s, cold := mustStore(t, Config{HotMaxBytes: 3000, ArchiveAfter: time.Hour, FullWait: 5 * time.Second})
	mustPut(t, s, 1, backendtest.RandomBytes(1, 1500))
	mustPut(t, s, 2, backendtest.RandomBytes(2, 1500))
	// room is made by archiving
	mustPut(t, s, 3, backendtest.RandomBytes(3, 1500))
	if s.Stats(ctx).HotBytes > 3000 {
		t.Fatalf("hot usage %d over the 3000 budget", s.Stats(ctx).HotBytes)
	}
	cold.down.Store(true)
	start := time.Now()
	_, err := s.Put(ctx, 4, bytes.NewReader(make([]byte, 2000)), 2000, time.Time{})
	if !errors.Is(err, backend.ErrNoSpace) {
		t.Fatalf("put with hot full and cold down: %v, want ErrNoSpace", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("took %v to refuse with the cold tier unreachable", took)
	}
	t.Logf("refused in %v: %v", time.Since(start).Round(time.Millisecond), err)
	cold.down.Store(false)
	for id := segment.ID(1); id <= 3; id++ {
		if got := mustRead(t, s, id); !bytes.Equal(got, backendtest.RandomBytes(int64(id), 1500)) {
			t.Fatalf("segment %d changed", id)
		}
	}
	mustPut(t, s, 4, make([]byte, 2000))
}

// TestArchiveAfterAge: the policy archives what is older than ArchiveAfter
// by the store's clock, and nothing younger.
func TestArchiveAfterAge(t *testing.T) {
	clock := newClock()
	s, _ := mustStore(t, Config{ArchiveAfter: time.Hour, Now: clock.now})
	mustPut(t, s, 1, []byte("one"))
	clock.advance(30 * time.Minute)
	if n := s.ArchivePass(ctx); n != 0 {
		t.Fatalf("archived %d segments 30 minutes after writing, want 0", n)
	}
	clock.advance(31 * time.Minute)
	mustPut(t, s, 2, []byte("two")) // an hour younger by the store's clock
	if n := s.ArchivePass(ctx); n != 1 {
		t.Fatalf("archived %d segments, want 1", n)
	}
	for id, want := range map[segment.ID]segment.Tier{1: segment.TierCold, 2: segment.TierHot} {
		if info, err := s.Stat(ctx, id); err != nil || info.Tier != want {
			t.Fatalf("segment %d: %v (%v), want %v", id, info.Tier, err, want)
		}
	}
}

// clock is a settable clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
