package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/cache"
	"github.com/scribefs/scribefs/segment"
)

// fetcher reads cold blocks through the cache: a block a reader needs now
// (coldBlock), the readahead of sequential readers and the whole of the
// next small segments of an in-order scan (prefetch), each GET checked
// block by block against the recorded checksums (fetchSpan).
type fetcher struct {
	*parts

	fetchSem chan struct{} // bounds concurrent cold range GETs

	// mu guards inflight: cold blocks being fetched by a prefetch.
	mu       sync.Mutex
	inflight map[cache.Key]*prefetchCall
	// follow detects cold segments opened in id order (see followOpen).
	follow struct {
		sync.Mutex
		last  segment.ID // the segment opened last
		next  segment.ID // the one after it in the index
		run   int        // how many were opened in order, up to last
		ahead segment.ID // prefetched up to here during this run
	}

	// noSums remembers cold versions known to carry no checksum at all
	// (bounded: a version evicted costs one more Stat).
	noSums *lru.Cache[versionKey, struct{}]
	// learning lets one whole read at a time learn a version's block sums.
	learning singleflight.Group
}

// versionKey names one version of a segment.
type versionKey struct {
	id      segment.ID
	version string
}

// noSumsMax bounds fetcher.noSums.
const noSumsMax = 4096

// newLRU returns a bounded map that forgets its least recently used
// entries beyond max.
func newLRU[K comparable, V any](max int) *lru.Cache[K, V] {
	c, err := lru.New[K, V](max)
	if err != nil {
		panic(err) // max is a positive constant
	}
	return c
}

// followOpen notices segments opened one after the other in id order
// (a ledger replayed from some point, or cat, cp, tar over the directory)
// and, from the second in a row, prefetches the next PrefetchSegments small
// cold segments whole, so that their GETs overlap the reading of those
// before them instead of each open waiting for its own. "Next" follows the
// index, so sparse ids count as in order. Segments larger than a fetch span
// are left to the readahead of their own reader; segments opened out of
// order end the run and prefetch nothing.
func (f *fetcher) followOpen(ctx context.Context, id segment.ID) {
	n := f.cfg.PrefetchSegments
	if n <= 0 || f.cold == nil {
		return
	}
	f.follow.Lock()
	defer f.follow.Unlock()
	switch {
	case id == f.follow.last && f.follow.run > 0:
		return // opened again: neither a step nor a break
	case id == f.follow.next && f.follow.run > 0:
		f.follow.run++
	default:
		f.follow.run, f.follow.ahead = 1, id
	}
	f.follow.last = id
	infos, err := f.index.After(id, n)
	if err != nil || len(infos) == 0 {
		f.follow.next = id
		return
	}
	f.follow.next = infos[0].ID
	if f.follow.run < 2 {
		return
	}
	for _, info := range infos {
		if info.ID <= f.follow.ahead {
			continue
		}
		f.follow.ahead = info.ID
		if info.Unresolved || info.Size == 0 || info.Size > f.cfg.FetchSpan {
			continue
		}
		if _, err := f.hot.Stat(ctx, info.ID); err == nil {
			continue // read from the hot tier
		}
		f.prefetch(info, 0, (info.Size-1)/segment.BlockSize)
	}
}

// fillColdSums gives a cold version larger than one fetch span the block
// checksums that let its ranges be checked, before any range is read:
//
//   - recorded ones the listing did not carry: one Stat (scribefs keeps
//     them in the object's metadata or its companion object), kept in the
//     index (the sums transition);
//   - for a version checked only as a whole (a whole-object CRC32C and no
//     block sums, as when a companion is lost, or an upstream gzip stream,
//     which only gzip's own CRC checks), block sums computed by one whole
//     read, which the cold tier checks at its end; kept the same way;
//   - a version carrying no checksum at all (written by another program)
//     is read unchecked (Stats.UncheckedReads counts such fetches), and
//     remembered so that the Stat is not repeated per open.
//
// A failure to learn them fails the open: ranges are never read unchecked
// because S3 did not answer once.
func (f *fetcher) fillColdSums(ctx context.Context, info segment.Info) (segment.Info, error) {
	k := versionKey{info.ID, info.Version}
	if f.noSums.Contains(k) {
		return info, nil
	}
	full := info
	if info.Sums == nil {
		var err error
		if full, err = f.cold.Stat(ctx, info.ID); err != nil {
			return info, fmt.Errorf("open segment %d: learning its checksums: %w", info.ID, err)
		}
		if full.Version != info.Version {
			return info, fmt.Errorf("open segment %d: version %s replaced by %s: %w", info.ID, info.Version, full.Version, backend.ErrStale)
		}
	}
	sums := full.Sums
	if sums == nil && full.Compression == "" {
		f.noSums.Add(k, struct{}{})
		return info, nil
	}
	if sums == nil || len(sums.Blocks) == 0 {
		v, err, _ := f.learning.Do(info.ID.String()+"/"+info.Version, func() (any, error) {
			return f.sumWhole(ctx, full)
		})
		if err != nil {
			return info, err
		}
		sums = v.(*segment.Checksums)
	}
	info.Sums = sums
	f.update(info.ID, func(r *backend.Record) error {
		if r.Cold != nil && r.Cold.Version == info.Version && (r.Cold.Sums == nil || len(r.Cold.Sums.Blocks) == 0) {
			r.Cold.Sums = sums
		}
		return nil
	})
	return info, nil
}

// sumWhole reads a cold version whole, as the cold tier checks it (its
// whole-object checksum, or gzip's CRC, at the end), and returns the block
// checksums of what it read.
func (f *fetcher) sumWhole(ctx context.Context, info segment.Info) (*segment.Checksums, error) {
	r, err := f.cold.Get(ctx, info.ID, backend.GetOptions{Length: -1, Version: info.Version, Compression: info.Compression})
	if err != nil {
		return nil, fmt.Errorf("open segment %d: reading it whole to checksum its blocks: %w", info.ID, err)
	}
	defer r.Close()
	var sum segment.Summer
	if _, err := io.Copy(&sum, r); err != nil {
		if errors.Is(err, segment.ErrChecksum) {
			f.stats.ChecksumErrors.Add(1)
			f.log.Error("cold data failed its checksum", "op", "read", "segment", info.ID, "err", err)
		}
		return nil, fmt.Errorf("open segment %d: reading it whole to checksum its blocks: %w", info.ID, err)
	}
	if sum.Size() != info.Size {
		return nil, fmt.Errorf("open segment %d: read %d bytes whole, recorded %d: %w", info.ID, sum.Size(), info.Size, backend.ErrStale)
	}
	sums := sum.Sums()
	if info.Sums != nil && sums.Whole != info.Sums.Whole {
		// The backend checks this already; a second look costs nothing.
		f.stats.ChecksumErrors.Add(1)
		return nil, fmt.Errorf("open segment %d: %w: read crc32c %08x, recorded %08x", info.ID, segment.ErrChecksum, sums.Whole, info.Sums.Whole)
	}
	f.stats.ColdFetches.Add(1)
	f.stats.ColdFetchBytes.Add(sum.Size())
	return sums, nil
}

// coldBlock returns block blk of a cold version: from the cache, from a
// prefetch in flight, or fetched now.
func (f *fetcher) coldBlock(ctx context.Context, info segment.Info, blk int64) ([]byte, error) {
	key := cache.Key{ID: info.ID, Version: info.Version, Block: blk}
	if b, ok := f.cache.Peek(key); ok {
		return b, nil
	}
	f.mu.Lock()
	call, busy := f.inflight[key]
	f.mu.Unlock()
	if busy {
		<-call.done
		if b, ok := f.cache.Peek(key); ok {
			return b, nil
		}
		// The prefetch spent a whole retry budget on a transient failure:
		// fetching again would make the reader wait that long a second time
		// for the same outcome. Other failures (a checksum error elsewhere
		// in the span) say nothing about this block.
		if call.err != nil && backend.IsTransient(call.err) {
			return nil, call.err
		}
	}
	return f.cache.Get(key, func() ([]byte, error) {
		blocks, err := f.fetchSpan(ctx, info, blk, blk)
		if err != nil {
			return nil, err
		}
		return blocks[0], nil
	})
}

// prefetch starts fetching the blocks in [first, last] that are neither
// cached nor already in flight, in spans of Config.FetchSpan.
func (f *fetcher) prefetch(info segment.Info, first, last int64) {
	span := max(f.cfg.FetchSpan/segment.BlockSize, 1)
	f.mu.Lock()
	var runs [][2]int64
	for b := first; b <= last; b++ {
		key := cache.Key{ID: info.ID, Version: info.Version, Block: b}
		if _, busy := f.inflight[key]; busy || f.cache.Contains(key) {
			continue
		}
		if n := len(runs); n > 0 && runs[n-1][1] == b-1 && b-runs[n-1][0] < span {
			runs[n-1][1] = b
		} else {
			runs = append(runs, [2]int64{b, b})
		}
		f.inflight[key] = &prefetchCall{done: make(chan struct{})}
	}
	f.mu.Unlock()
	for _, run := range runs {
		go func(lo, hi int64) {
			blocks, err := f.fetchSpan(context.Background(), info, lo, hi)
			for b := lo; b <= hi; b++ {
				key := cache.Key{ID: info.ID, Version: info.Version, Block: b}
				if err == nil {
					f.cache.Add(key, blocks[b-lo])
				}
				f.mu.Lock()
				call := f.inflight[key]
				call.err = err
				close(call.done)
				delete(f.inflight, key)
				f.mu.Unlock()
			}
			if err != nil {
				f.log.Debug("prefetch failed", "segment", info.ID, "err", err)
			}
		}(run[0], run[1])
	}
}

// fetchSpan GETs blocks [lo, hi] of a cold version in one ranged request
// and checks each block against its recorded checksum before any byte of it
// is used.
func (f *fetcher) fetchSpan(ctx context.Context, info segment.Info, lo, hi int64) ([][]byte, error) {
	if (info.Sums == nil || len(info.Sums.Blocks) == 0) && info.Size <= f.cfg.FetchSpan && (lo > 0 || (hi+1)*segment.BlockSize < info.Size) {
		// Without block sums only a whole read is checked (the object's
		// whole checksum, or gzip's CRC, at its end): a version that one
		// fetch covers, which Store.Open lets go without block sums, is
		// always fetched whole, and the blocks around the asked ones go
		// to the cache. (A larger one without them has no checksum at
		// all: Store.Open learns block sums for any other.)
		blocks, err := f.fetchSpan(ctx, info, 0, (info.Size-1)/segment.BlockSize)
		if err != nil {
			return nil, err
		}
		for b, buf := range blocks {
			if int64(b) < lo || int64(b) > hi {
				f.cache.Add(cache.Key{ID: info.ID, Version: info.Version, Block: int64(b)}, buf)
			}
		}
		return blocks[lo : hi+1], nil
	}
	f.fetchSem <- struct{}{}
	defer func() { <-f.fetchSem }()
	off := lo * segment.BlockSize
	end := min((hi+1)*segment.BlockSize, info.Size)
	opts := backend.GetOptions{Offset: off, Length: end - off, Version: info.Version, Compression: info.Compression}
	whole := off == 0 && end == info.Size
	if whole {
		opts.Length = -1 // a whole read: the backend checks the object's own checksum at EOF
	}
	r, err := f.cold.Get(ctx, info.ID, opts)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	blocks := make([][]byte, 0, hi-lo+1)
	for b := lo; b <= hi; b++ {
		n := min(segment.BlockSize, info.Size-b*segment.BlockSize)
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("read segment %d at offset %d: %w", info.ID, b*segment.BlockSize, asTransient(err))
		}
		if err := info.Sums.VerifyBlock(b, buf); err != nil {
			f.stats.ChecksumErrors.Add(1)
			f.log.Error("cold data failed its checksum", "op", "read", "segment", info.ID, "offset", b*segment.BlockSize, "err", err)
			return nil, fmt.Errorf("segment %d: %w", info.ID, err)
		}
		blocks = append(blocks, buf)
	}
	if whole {
		// Read through EOF so the backend's whole-object check runs.
		if n, err := r.Read(make([]byte, 1)); n > 0 || (err != nil && err != io.EOF) {
			if err == nil {
				// The version is pinned: for a compressed one whose
				// decoded size was declared (a Scribe Ledger sidecar),
				// more bytes are a lie of the object, not a newer version.
				kind := backend.ErrStale
				if info.Compression != "" {
					kind = segment.ErrChecksum
				}
				err = fmt.Errorf("%w: object longer than its recorded %d bytes", kind, info.Size)
			}
			if errors.Is(err, segment.ErrChecksum) {
				f.stats.ChecksumErrors.Add(1)
				f.log.Error("cold data failed its checksum", "op", "read", "segment", info.ID, "offset", 0, "err", err)
			}
			return nil, fmt.Errorf("read segment %d: %w", info.ID, err)
		}
	}
	f.stats.ColdFetches.Add(1)
	f.stats.ColdFetchBytes.Add(end - off)
	if info.Sums == nil && info.Compression == "" && !info.Unresolved {
		f.stats.UncheckedReads.Add(1)
	}
	return blocks, nil
}
