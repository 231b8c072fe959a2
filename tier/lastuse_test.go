package tier

import (
	"bytes"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/mem"
	"github.com/scribefs/scribefs/segment"
)

// lastUseLen is how many segments the archiver's last-use map holds.
func lastUseLen(a *archiver) int { return a.lastUse.Len() }

// TestLastUseBounded: segments that come and go (written, opened, renamed
// away, deleted) leave nothing behind in the archiver's per-segment
// last-use map, and the map never holds more than lastUseMax entries.
func TestLastUseBounded(t *testing.T) {
	for _, withCold := range []bool{false, true} {
		hot := mem.New(segment.TierHot)
		var cold *mem.Backend
		if withCold {
			cold = mem.New(segment.TierCold)
		}
		cfg := Config{SpoolDir: t.TempDir(), ArchiveAfter: time.Hour}
		var s *Store
		var err error
		if withCold {
			s, err = New(hot, hot.Index(), cold, nil, cfg)
		} else {
			s, err = New(hot, hot.Index(), nil, nil, cfg)
		}
		if err != nil {
			t.Fatal(err)
		}
		const n = 500
		for i := segment.ID(1); i <= n; i++ {
			if _, err := s.Put(ctx, i, bytes.NewReader([]byte("x")), 1, time.Time{}); err != nil {
				t.Fatal(err)
			}
			if r, err := s.Open(ctx, i); err == nil {
				r.Close()
			}
			to := i + 1_000_000
			if err := s.Rename(ctx, i, to); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, to); err != nil {
				t.Fatal(err)
			}
		}
		if got := lastUseLen(s.arch); got != 0 {
			t.Errorf("cold tier %v: %d last-use entries after %d segments came and went, want 0", withCold, got, n)
		}
		for i := 0; i < lastUseMax+10; i++ {
			s.arch.touch(segment.ID(i))
		}
		if got := lastUseLen(s.arch); got > lastUseMax {
			t.Errorf("%d last-use entries, want at most %d", got, lastUseMax)
		}
	}
}
