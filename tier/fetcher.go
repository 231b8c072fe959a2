package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

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

	// noSums remembers cold versions known to carry no block checksums.
	noSums sync.Map
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

// fillColdSums asks S3 once for the checksums a listing does not carry
// (scribefs records them in object metadata) and keeps them in the index.
// A version found to carry none is remembered, so a reader of objects
// written by other programs pays that HEAD once per version, not per open.
func (f *fetcher) fillColdSums(ctx context.Context, info segment.Info) segment.Info {
	type versionKey struct {
		id      segment.ID
		version string
	}
	k := versionKey{info.ID, info.Version}
	if _, known := f.noSums.Load(k); known {
		return info
	}
	full, err := f.cold.Stat(ctx, info.ID)
	if err != nil || full.Version != info.Version {
		return info
	}
	if full.Sums == nil || len(full.Sums.Blocks) == 0 {
		// Only a whole-object sum, or none: ranges cannot be checked.
		f.noSums.Store(k, struct{}{})
		return info
	}
	info.Sums = full.Sums
	f.update(info.ID, func(r *backend.Record) error {
		if r.Cold != nil && r.Cold.Version == info.Version && r.Cold.Sums == nil {
			r.Cold.Sums = full.Sums
		}
		return nil
	})
	return info
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
				err = fmt.Errorf("%w: object longer than its recorded %d bytes", backend.ErrStale, info.Size)
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
	return blocks, nil
}
