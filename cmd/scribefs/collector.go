package main

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scribefs/scribefs/tier"
)

// storeCollector reads a tiered store's own gauges and counters at scrape
// time (tier.Stats): cache, hot tier, archive backlog, archival and cold
// fetches. Reading them then, instead of mirroring them into instruments,
// keeps one source of truth that status and /metrics share.
type storeCollector struct {
	s *tier.Store

	cacheHits, cacheMisses, cacheEvictions, cacheBytes, cacheMax *prometheus.Desc
	hotBytes, hotMax, backlogSegs, backlogBytes                  *prometheus.Desc
	archived, archiveErrs, checksumErrs, coldFetches, coldBytes  *prometheus.Desc
	uncheckedReads                                               *prometheus.Desc
	hotMaxBytes                                                  int64
}

var _ prometheus.Collector = (*storeCollector)(nil)

// newStoreCollector describes s; hotMaxBytes is the hot tier's budget.
func newStoreCollector(s *tier.Store, hotMaxBytes int64) *storeCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &storeCollector{
		s:              s,
		hotMaxBytes:    hotMaxBytes,
		cacheHits:      d("scribefs_cache_hits_total", "Cold blocks served from the read cache."),
		cacheMisses:    d("scribefs_cache_misses_total", "Cold blocks not in the read cache, fetched from S3."),
		cacheEvictions: d("scribefs_cache_evictions_total", "Blocks evicted from the read cache to stay within its bound."),
		cacheBytes:     d("scribefs_cache_bytes", "Bytes held in the read cache."),
		cacheMax:       d("scribefs_cache_max_bytes", "The read cache's bound (cache.max_bytes)."),
		hotBytes:       d("scribefs_hot_bytes", "Bytes of segments in the hot tier."),
		hotMax:         d("scribefs_hot_max_bytes", "The hot tier's budget (storage.hot.max_bytes)."),
		backlogSegs:    d("scribefs_archive_backlog_segments", "Hot segments older than tiering.archive_after_secs, not yet archived."),
		backlogBytes:   d("scribefs_archive_backlog_bytes", "Bytes of the hot segments counted by scribefs_archive_backlog_segments."),
		archived:       d("scribefs_archived_total", "Segments moved from the hot tier to the cold tier."),
		archiveErrs:    d("scribefs_archive_errors_total", "Archival attempts that failed."),
		checksumErrs:   d("scribefs_checksum_errors_total", "Cold blocks that failed their recorded checksum."),
		coldFetches:    d("scribefs_cold_fetches_total", "Ranged GETs of cold data (cache fills and prefetches)."),
		coldBytes:      d("scribefs_cold_fetch_bytes_total", "Bytes of cold data fetched from S3."),
		uncheckedReads: d("scribefs_unchecked_cold_fetches_total", "Cold fetches of objects that carry no checksum (written by other programs), served as S3 returned them."),
	}
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cacheHits, c.cacheMisses, c.cacheEvictions, c.cacheBytes, c.cacheMax,
		c.hotBytes, c.hotMax, c.backlogSegs, c.backlogBytes, c.archived, c.archiveErrs, c.checksumErrs, c.coldFetches, c.coldBytes, c.uncheckedReads} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. The backlog walks the hot tier's
// metadata (no segment bytes); a scrape is bounded to a few seconds so a
// huge hot tier cannot stall it, and an unfinished walk omits the backlog.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	st := c.s.Stats(context.Background())
	counter(c.cacheHits, st.CacheHits)
	counter(c.cacheMisses, st.CacheMisses)
	counter(c.cacheEvictions, st.CacheEvictions)
	gauge(c.cacheBytes, st.CacheBytes)
	gauge(c.cacheMax, st.CacheMaxBytes)
	gauge(c.hotBytes, st.HotBytes)
	gauge(c.hotMax, c.hotMaxBytes)
	counter(c.archived, st.Archived)
	counter(c.archiveErrs, st.ArchiveErrors)
	counter(c.checksumErrs, st.ChecksumErrors)
	counter(c.coldFetches, st.ColdFetches)
	counter(c.coldBytes, st.ColdFetchBytes)
	counter(c.uncheckedReads, st.UncheckedReads)
	if st.BacklogKnown {
		gauge(c.backlogSegs, int64(st.BacklogSegments))
		gauge(c.backlogBytes, st.BacklogBytes)
	}
}
