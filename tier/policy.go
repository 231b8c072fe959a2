package tier

import (
	"context"
	"time"

	"github.com/scribefs/scribefs/segment"
)

// Run does the store's background work until ctx ends: it reconciles the
// index with the bucket listing at once and every Config.Refresh, replays
// deferred deletes, and archives by policy every Config.CheckInterval.
func (s *Store) Run(ctx context.Context) {
	if s.cold == nil {
		return
	}
	refresh := time.NewTicker(s.cfg.Refresh)
	defer refresh.Stop()
	check := time.NewTicker(s.cfg.CheckInterval)
	defer check.Stop()
	s.refresh(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			s.refresh(ctx)
		case <-check.C:
			if !s.cfg.ReadOnly {
				s.ArchivePass(ctx)
			}
		}
	}
}

func (s *Store) refresh(ctx context.Context) {
	if err := s.recon.Reconcile(ctx); err != nil {
		s.log.Warn("reconciling the index with the bucket failed", "op", "reconcile", "err", err)
	}
	if n, err := s.ReplayTombstones(ctx); err != nil {
		s.log.Warn("replaying deferred deletes failed", "op", "delete", "err", err)
	} else if n > 0 {
		s.log.Info("deferred deletes carried out", "op", "delete", "count", n)
	}
}

// ArchivePass archives every hot segment written more than ArchiveAfter
// ago, then, while the hot tier is over its budget, the least recently used
// (opened or written by this process; else the oldest written), with at most ArchiveParallel uploads in flight. It returns how
// many segments it archived.
func (s *Store) ArchivePass(ctx context.Context) int { return s.arch.pass(ctx, 0) }

// ArchiveAll archives the given segments in parallel, calling done (if not
// nil) after each with its result. It returns how many succeeded.
func (s *Store) ArchiveAll(ctx context.Context, segs []segment.Info, done func(segment.Info, error)) int {
	return s.arch.all(ctx, segs, done)
}

// Reconcile brings the index in line with a full listing of the bucket
// (see reconciler.Reconcile).
func (s *Store) Reconcile(ctx context.Context) error { return s.recon.Reconcile(ctx) }

// HotSegments lists the segments whose bytes are in the hot tier.
func (s *Store) HotSegments(ctx context.Context) ([]segment.Info, error) {
	var out []segment.Info
	err := s.hot.List(ctx, func(i segment.Info) error { out = append(out, i); return nil })
	return out, err
}
