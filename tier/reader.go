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

// Reader reads one pinned version of a segment (fs.Reader).
type Reader struct {
	s       *Store
	info    segment.Info
	release func() // unpins a hot version

	// mu guards the sequential-read detector.
	mu        sync.Mutex
	maxEnd    int64 // the furthest offset read so far in the current run
	window    int64 // current readahead, grows while reads stay sequential
	fetchedTo int64 // how far prefetches have been issued
}

// Open pins the current version of a segment for reading.
func (s *Store) Open(ctx context.Context, id segment.ID) (*Reader, error) {
	info, release, err := s.hot.PinCurrent(id)
	if err == nil {
		s.touch(id)
		s.followOpen(ctx, id)
		return &Reader{s: s, info: info, release: release}, nil
	}
	if !errors.Is(err, backend.ErrNotFound) {
		return nil, err
	}
	info, err = s.coldStat(ctx, id)
	if err != nil {
		return nil, err
	}
	// A segment that one fetch covers needs no block sums: it is read whole,
	// and the backend checks the whole-object checksum recorded with it
	// (fetchSpan reads to EOF for that). Larger ones need the block sums to
	// check ranges.
	if info.Sums == nil && info.Size > s.cfg.FetchSpan {
		info = s.fillColdSums(ctx, info)
	}
	s.followOpen(ctx, id)
	return &Reader{s: s, info: info}, nil
}

// followOpen notices segments opened one after the other in id order
// (a ledger replayed from some point, or cat, cp, tar over the directory)
// and, from the second in a row, prefetches the next PrefetchSegments small
// cold segments whole, so that their GETs overlap the reading of those
// before them instead of each open waiting for its own. "Next" follows the
// index, so sparse ids count as in order. Segments larger than a fetch span
// are left to the readahead of their own reader; segments opened out of
// order end the run and prefetch nothing.
func (s *Store) followOpen(ctx context.Context, id segment.ID) {
	n := s.cfg.PrefetchSegments
	if n <= 0 || s.cold == nil {
		return
	}
	s.follow.Lock()
	defer s.follow.Unlock()
	switch {
	case id == s.follow.last && s.follow.run > 0:
		return // opened again: neither a step nor a break
	case id == s.follow.next && s.follow.run > 0:
		s.follow.run++
	default:
		s.follow.run, s.follow.ahead = 1, id
	}
	s.follow.last = id
	infos, err := s.index.After(id, n)
	if err != nil || len(infos) == 0 {
		s.follow.next = id
		return
	}
	s.follow.next = infos[0].ID
	if s.follow.run < 2 {
		return
	}
	for _, info := range infos {
		if info.ID <= s.follow.ahead {
			continue
		}
		s.follow.ahead = info.ID
		if info.Unresolved || info.Size == 0 || info.Size > s.cfg.FetchSpan {
			continue
		}
		if _, err := s.hot.Stat(ctx, info.ID); err == nil {
			continue // read from the hot tier
		}
		s.prefetch(info, 0, (info.Size-1)/segment.BlockSize)
	}
}

// fillColdSums asks S3 once for the checksums a listing does not carry
// (scribefs records them in object metadata) and keeps them in the index.
// A version found to carry none is remembered, so a reader of objects
// written by other programs pays that HEAD once per version, not per open.
func (s *Store) fillColdSums(ctx context.Context, info segment.Info) segment.Info {
	type versionKey struct {
		id      segment.ID
		version string
	}
	k := versionKey{info.ID, info.Version}
	if _, known := s.noSums.Load(k); known {
		return info
	}
	full, err := s.cold.Stat(ctx, info.ID)
	if err != nil || full.Version != info.Version {
		return info
	}
	if full.Sums == nil || len(full.Sums.Blocks) == 0 {
		// Only a whole-object sum, or none: ranges cannot be checked.
		s.noSums.Store(k, struct{}{})
		return info
	}
	info.Sums = full.Sums
	s.update(info.ID, func(r *backend.Record) error {
		if r.Cold != nil && r.Cold.Version == info.Version && r.Cold.Sums == nil {
			r.Cold.Sums = full.Sums
		}
		return nil
	})
	return info
}

// Info describes the pinned version.
func (r *Reader) Info() segment.Info { return r.info }

// Close releases the pin.
func (r *Reader) Close() error {
	if r.release != nil {
		r.release()
	}
	return nil
}

// ReadAt implements io.ReaderAt over the pinned version.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.info.Size {
		return 0, io.EOF
	}
	if r.info.Tier == segment.TierHot {
		return r.s.hot.ReadAt(r.info.Version, p, off)
	}
	return r.readCold(p, off)
}

func (r *Reader) readCold(p []byte, off int64) (int, error) {
	ctx := context.Background()
	size := r.info.Size
	want := min(int64(len(p)), size-off)
	r.readAhead(off, want)
	n := 0
	for int64(n) < want {
		pos := off + int64(n)
		blk := pos / segment.BlockSize
		data, err := r.s.coldBlock(ctx, r.info, blk)
		if err != nil {
			return n, err
		}
		in := pos - blk*segment.BlockSize
		if in >= int64(len(data)) {
			return n, fmt.Errorf("read segment %d: block %d short (%d bytes): %w", r.info.ID, blk, len(data), backend.ErrUnavailable)
		}
		n += copy(p[n:want], data[in:])
	}
	if int64(n) < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

// readAhead detects sequential reading and prefetches the blocks ahead of
// it, the window doubling up to Config.ReadAhead while reads stay
// sequential. The kernel's readahead requests arrive concurrently and so
// out of order: a read counts as sequential when it lands near the furthest
// point read so far, not only exactly there. A read elsewhere (random
// access) resets the window and prefetches nothing.
func (r *Reader) readAhead(off, n int64) {
	const slack = 4 * segment.BlockSize
	r.mu.Lock()
	end := off + n
	if off > r.maxEnd+slack || end < r.maxEnd-r.window-slack {
		r.window, r.maxEnd, r.fetchedTo = 0, end, end
		r.mu.Unlock()
		return
	}
	r.maxEnd = max(r.maxEnd, end)
	if r.window == 0 {
		r.window = 8 * segment.BlockSize
	} else if r.window < r.s.cfg.ReadAhead {
		r.window = min(2*r.window, r.s.cfg.ReadAhead)
	}
	// Refill only when less than a fetch span is left ahead, so GETs go
	// out a whole span at a time rather than one block per read as the
	// window slides.
	r.fetchedTo = max(r.fetchedTo, r.maxEnd)
	if r.fetchedTo-r.maxEnd > r.window-r.s.cfg.FetchSpan {
		r.mu.Unlock()
		return
	}
	from, to := r.fetchedTo, r.maxEnd+r.window
	r.fetchedTo = to
	r.mu.Unlock()
	first := from / segment.BlockSize
	last := min((to-1)/segment.BlockSize, (r.info.Size-1)/segment.BlockSize)
	if first <= last {
		r.s.prefetch(r.info, first, last)
	}
}

// coldBlock returns block blk of a cold version: from the cache, from a
// prefetch in flight, or fetched now.
func (s *Store) coldBlock(ctx context.Context, info segment.Info, blk int64) ([]byte, error) {
	key := cache.Key{ID: info.ID, Version: info.Version, Block: blk}
	if b, ok := s.cache.Peek(key); ok {
		return b, nil
	}
	s.mu.Lock()
	call, busy := s.inflight[key]
	s.mu.Unlock()
	if busy {
		<-call.done
		if b, ok := s.cache.Peek(key); ok {
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
	return s.cache.Get(key, func() ([]byte, error) {
		blocks, err := s.fetchSpan(ctx, info, blk, blk)
		if err != nil {
			return nil, err
		}
		return blocks[0], nil
	})
}

// prefetchCall is one block of a prefetch in flight; err is set before done
// is closed.
type prefetchCall struct {
	done chan struct{}
	err  error
}

// prefetch starts fetching the blocks in [first, last] that are neither
// cached nor already in flight, in spans of Config.FetchSpan.
func (s *Store) prefetch(info segment.Info, first, last int64) {
	span := max(s.cfg.FetchSpan/segment.BlockSize, 1)
	s.mu.Lock()
	var runs [][2]int64
	for b := first; b <= last; b++ {
		key := cache.Key{ID: info.ID, Version: info.Version, Block: b}
		if _, busy := s.inflight[key]; busy || s.cache.Contains(key) {
			continue
		}
		if n := len(runs); n > 0 && runs[n-1][1] == b-1 && b-runs[n-1][0] < span {
			runs[n-1][1] = b
		} else {
			runs = append(runs, [2]int64{b, b})
		}
		s.inflight[key] = &prefetchCall{done: make(chan struct{})}
	}
	s.mu.Unlock()
	for _, run := range runs {
		go func(lo, hi int64) {
			blocks, err := s.fetchSpan(context.Background(), info, lo, hi)
			for b := lo; b <= hi; b++ {
				key := cache.Key{ID: info.ID, Version: info.Version, Block: b}
				if err == nil {
					s.cache.Add(key, blocks[b-lo])
				}
				s.mu.Lock()
				call := s.inflight[key]
				call.err = err
				close(call.done)
				delete(s.inflight, key)
				s.mu.Unlock()
			}
			if err != nil {
				s.log.Debug("prefetch failed", "segment", info.ID, "err", err)
			}
		}(run[0], run[1])
	}
}

// fetchSpan GETs blocks [lo, hi] of a cold version in one ranged request
// and checks each block against its recorded checksum before any byte of it
// is used.
func (s *Store) fetchSpan(ctx context.Context, info segment.Info, lo, hi int64) ([][]byte, error) {
	s.fetchSem <- struct{}{}
	defer func() { <-s.fetchSem }()
	off := lo * segment.BlockSize
	end := min((hi+1)*segment.BlockSize, info.Size)
	opts := backend.GetOptions{Offset: off, Length: end - off, Version: info.Version, Compression: info.Compression}
	whole := off == 0 && end == info.Size
	if whole {
		opts.Length = -1 // a whole read: the backend checks the object's own checksum at EOF
	}
	r, err := s.cold.Get(ctx, info.ID, opts)
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
			s.stats.ChecksumErrors.Add(1)
			s.log.Error("cold data failed its checksum", "op", "read", "segment", info.ID, "offset", b*segment.BlockSize, "err", err)
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
				s.stats.ChecksumErrors.Add(1)
				s.log.Error("cold data failed its checksum", "op", "read", "segment", info.ID, "offset", 0, "err", err)
			}
			return nil, fmt.Errorf("read segment %d: %w", info.ID, err)
		}
	}
	s.stats.ColdFetches.Add(1)
	s.stats.ColdFetchBytes.Add(end - off)
	return blocks, nil
}

// asTransient marks a short body as worth retrying.
func asTransient(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %v", backend.ErrUnavailable, err)
	}
	return err
}
