package tier

import (
	"context"
	"sync/atomic"
	"time"
)

// Counters are cumulative operation counts, kept as the store works.
type Counters struct {
	ColdFetches, ColdFetchBytes, Archived, ArchiveErrors, ChecksumErrors atomic.Int64
	// UncheckedReads counts cold fetches of versions that carry no
	// checksum at all (objects other programs wrote): bytes served
	// as S3 returned them.
	UncheckedReads atomic.Int64
}

// Stats is one snapshot of the store's gauges and counters: what status
// and /metrics show, read from one place at the moment they are asked for.
type Stats struct {
	CacheHits, CacheMisses, CacheEvictions int64
	CacheBytes, CacheMaxBytes              int64
	HotBytes                               int64
	Archived, ArchiveErrors                int64
	ChecksumErrors                         int64
	ColdFetches, ColdFetchBytes            int64
	UncheckedReads                         int64
	// The archive backlog (hot segments older than ArchiveAfter); walking
	// the hot tier's metadata is bounded in time, and BacklogKnown is false
	// when the walk did not finish.
	BacklogSegments int
	BacklogBytes    int64
	BacklogKnown    bool
}

// Stats takes a snapshot; ctx bounds the backlog walk (at most 5 s).
func (s *Store) Stats(ctx context.Context) Stats {
	cs := s.cache.Stats()
	st := Stats{
		CacheHits: cs.Hits, CacheMisses: cs.Misses, CacheEvictions: cs.Evictions,
		CacheBytes: cs.Bytes, CacheMaxBytes: cs.MaxBytes,
		HotBytes:       s.hot.Usage(),
		Archived:       s.stats.Archived.Load(),
		ArchiveErrors:  s.stats.ArchiveErrors.Load(),
		ChecksumErrors: s.stats.ChecksumErrors.Load(),
		ColdFetches:    s.stats.ColdFetches.Load(),
		ColdFetchBytes: s.stats.ColdFetchBytes.Load(),
		UncheckedReads: s.stats.UncheckedReads.Load(),
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if n, b, err := s.ArchiveBacklog(ctx); err == nil {
		st.BacklogSegments, st.BacklogBytes, st.BacklogKnown = n, b, true
	}
	return st
}
