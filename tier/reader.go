package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// Reader reads one pinned version of a segment (fs.Reader).
type Reader struct {
	f       *fetcher
	info    segment.Info
	release func() // unpins a hot version

	// mu guards the sequential-read detector.
	mu        sync.Mutex
	maxEnd    int64 // the furthest offset read so far in the current run
	window    int64 // current readahead, grows while reads stay sequential
	fetchedTo int64 // how far prefetches have been issued
	broken    bool  // a read left the run that began at offset 0
	fromStart bool  // a run of reads began at offset 0 (a whole read can be checked)

	merkle *merkleCheck // nil unless Config.VerifyMerkle and a root is recorded
}

// Open pins the current version of a segment for reading.
func (s *Store) Open(ctx context.Context, id segment.ID) (*Reader, error) {
	info, release, err := s.hot.PinCurrent(id)
	if err == nil {
		s.arch.touch(id)
		s.fetch.followOpen(ctx, id)
		return &Reader{f: s.fetch, info: info, release: release}, nil
	}
	if !errors.Is(err, backend.ErrNotFound) {
		return nil, err
	}
	info, err = s.recon.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	// A segment that one fetch covers needs no block sums: it is read whole,
	// and the backend checks the whole-object checksum recorded with it
	// (fetchSpan reads to EOF for that). Larger ones need the block sums to
	// check ranges.
	if info.Size > s.cfg.FetchSpan && (info.Sums == nil || len(info.Sums.Blocks) == 0) {
		if info, err = s.fetch.fillColdSums(ctx, info); err != nil {
			return nil, err
		}
	}
	s.fetch.followOpen(ctx, id)
	return &Reader{f: s.fetch, info: info, merkle: s.merkleOf(ctx, info)}, nil
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
		return r.f.hot.ReadAt(r.info.Version, p, off)
	}
	return r.readCold(p, off)
}

func (r *Reader) readCold(p []byte, off int64) (int, error) {
	ctx := context.Background()
	size := r.info.Size
	want := min(int64(len(p)), size-off)
	r.readAhead(off, want)
	if off+want == size && r.merkle != nil {
		r.mu.Lock()
		whole := r.fromStart && !r.broken
		r.mu.Unlock()
		if whole {
			if err := r.merkle.check(ctx, r.f, r.info); err != nil {
				return 0, err
			}
		}
	}
	n := 0
	for int64(n) < want {
		pos := off + int64(n)
		blk := pos / segment.BlockSize
		data, err := r.f.coldBlock(ctx, r.info, blk)
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
	if off == 0 {
		r.broken, r.fromStart = false, true
	}
	if off > r.maxEnd+slack || end < r.maxEnd-r.window-slack {
		r.broken = r.broken || off != 0
		r.window, r.maxEnd, r.fetchedTo = 0, end, end
		r.mu.Unlock()
		return
	}
	r.maxEnd = max(r.maxEnd, end)
	if r.window == 0 {
		r.window = 8 * segment.BlockSize
	} else if r.window < r.f.cfg.ReadAhead {
		r.window = min(2*r.window, r.f.cfg.ReadAhead)
	}
	// Refill only when less than a fetch span is left ahead, so GETs go
	// out a whole span at a time rather than one block per read as the
	// window slides.
	r.fetchedTo = max(r.fetchedTo, r.maxEnd)
	if r.fetchedTo-r.maxEnd > r.window-r.f.cfg.FetchSpan {
		r.mu.Unlock()
		return
	}
	from, to := r.fetchedTo, r.maxEnd+r.window
	r.fetchedTo = to
	r.mu.Unlock()
	first := from / segment.BlockSize
	last := min((to-1)/segment.BlockSize, (r.info.Size-1)/segment.BlockSize)
	if first <= last {
		r.f.prefetch(r.info, first, last)
	}
}

// prefetchCall is one block of a prefetch in flight; err is set before done
// is closed.
type prefetchCall struct {
	done chan struct{}
	err  error
}

// asTransient marks a short body as worth retrying.
func asTransient(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %v", backend.ErrUnavailable, err)
	}
	return err
}
