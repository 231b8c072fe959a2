package tier

import (
	"context"
	"sort"
	"sync"
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
	if err := s.Reconcile(ctx); err != nil {
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
func (s *Store) ArchivePass(ctx context.Context) int { return s.archivePass(ctx, 0) }

// archivePass is ArchivePass making room for need more bytes as well.
func (s *Store) archivePass(ctx context.Context, need int64) int {
	if s.cold == nil {
		return 0
	}
	now := time.Now()
	var due, rest []segment.Info
	s.hot.List(ctx, func(i segment.Info) error {
		if now.Sub(i.WrittenAt) >= s.cfg.ArchiveAfter {
			due = append(due, i)
		} else {
			rest = append(rest, i)
		}
		return nil
	})
	usage := s.hot.Usage()
	for _, i := range due {
		usage -= i.Size
	}
	if usage+need > s.cfg.HotMaxBytes {
		sort.Slice(rest, func(a, b int) bool { return s.lastUsed(rest[a]).Before(s.lastUsed(rest[b])) })
		for _, i := range rest {
			if usage+need <= s.cfg.HotMaxBytes {
				break
			}
			due = append(due, i)
			usage -= i.Size
		}
	}
	return s.ArchiveAll(ctx, due, nil)
}

// ArchiveAll archives the given segments in parallel, calling done (if not
// nil) after each with its result. It returns how many succeeded.
func (s *Store) ArchiveAll(ctx context.Context, segs []segment.Info, done func(segment.Info, error)) int {
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok int
	)
	sem := make(chan struct{}, s.cfg.ArchiveParallel)
	for _, info := range segs {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(info segment.Info) {
			defer func() { <-sem; wg.Done() }()
			err := s.Archive(ctx, info.ID)
			if err != nil {
				s.lastArchiveErr.Store(&err)
				s.log.Warn("archive failed", "op", "archive", "segment", info.ID, "err", err)
			} else {
				s.lastArchiveErr.Store(nil)
			}
			mu.Lock()
			if err == nil {
				ok++
			}
			if done != nil {
				done(info, err)
			}
			mu.Unlock()
		}(info)
	}
	wg.Wait()
	return ok
}

// HotSegments lists the segments whose bytes are in the hot tier.
func (s *Store) HotSegments(ctx context.Context) ([]segment.Info, error) {
	var out []segment.Info
	err := s.hot.List(ctx, func(i segment.Info) error { out = append(out, i); return nil })
	return out, err
}
