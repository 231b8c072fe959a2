package tier

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// archiver moves segments from the hot tier to the cold tier: one at a
// time on request (archive), by policy (pass: by age, then the least
// recently used while the hot tier is over its budget), and to make room
// for a write into a full hot tier (waitForRoom).
type archiver struct {
	*parts

	// lastUse is when each hot segment was last opened or written by this
	// process; the least recently used go first when the hot tier is over
	// budget. An entry goes when its segment leaves the hot tier here, and
	// the map keeps at most lastUseMax entries (the least recently used
	// beyond that are forgotten, and then ordered by when they were
	// written, which is no later), so segments that leave the hot tier
	// some other way (renamed away, deleted by another path) cannot grow
	// it without bound.
	lastUse *lru.Cache[segment.ID, time.Time]

	// lastErr is the most recent archival failure, nil after a success; a
	// write waiting for room gives up early on a transient one.
	lastErr atomic.Pointer[error]
	// making lets one pass at a time make room for waiting writes.
	making singleflight.Group
}

// waitForRoom holds a write while the hot tier is over its budget and the
// archiver can make room: it archives the least recently used segments and
// retries until FullWait. With the cold tier unreachable as well it fails
// at once with ErrNoSpace (ENOSPC on the mount); nothing stored is touched.
func (a *archiver) waitForRoom(ctx context.Context, id segment.ID, size int64) error {
	if a.cold == nil || a.cfg.WriteThrough {
		return nil
	}
	need := max(size, 0)
	deadline := time.Now().Add(a.cfg.FullWait)
	for {
		used := a.hot.Usage()
		if used+need <= a.cfg.HotMaxBytes || used == 0 {
			return nil
		}
		a.making.Do("room", func() (any, error) { return a.pass(ctx, need), nil })
		if a.hot.Usage()+need <= a.cfg.HotMaxBytes {
			return nil
		}
		var why error
		if p := a.lastErr.Load(); p != nil && backend.IsTransient(*p) {
			why = *p
		} else if time.Now().After(deadline) {
			why = fmt.Errorf("archiving did not free enough within %v", a.cfg.FullWait)
		}
		if why != nil {
			err := fmt.Errorf("put segment %d: %w: hot tier full (%d of %d bytes, %d more needed) and the cold tier cannot take more: %v",
				id, backend.ErrNoSpace, a.hot.Usage(), a.cfg.HotMaxBytes, need, why)
			a.log.Error("write refused: hot tier full", "op", "put", "segment", id, "err", err)
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// forget drops what the archiver knows of a segment that left the hot
// tier.
func (a *archiver) forget(id segment.ID) { a.lastUse.Remove(id) }

// touch records a use of a hot segment for the LRU order.
func (a *archiver) touch(id segment.ID) { a.lastUse.Add(id, a.cfg.Now()) }

// lastUseMax bounds archiver.lastUse: 64 Ki entries, a few MiB.
const lastUseMax = 1 << 16

// lastUsed is when id was last used here, else when it was written.
func (a *archiver) lastUsed(i segment.Info) time.Time {
	if t, ok := a.lastUse.Peek(i.ID); ok {
		return t
	}
	return i.WrittenAt
}

// errSuperseded is an archive that finds its version replaced or gone.
var errSuperseded = errors.New("superseded")

// archive archives hot version only ("" for the current one); a
// version that is no longer current needs no upload (its successor's
// writer or the archiver uploads that).
func (a *archiver) archive(ctx context.Context, id segment.ID, only string) error {
	if a.cold == nil {
		return fmt.Errorf("archive segment %d: no cold tier configured", id)
	}
	if err := a.writable("archive", id); err != nil {
		return err
	}
	if err := a.coldWritable("archive", id); err != nil {
		return err
	}
	if err := a.locks.lock(ctx, id); err != nil {
		return err
	}
	defer a.locks.unlock(id)
	rec, err := a.index.Record(id)
	if err != nil {
		return err
	}
	switch {
	case rec.Hot == nil && rec.Cold != nil:
		return nil // already cold
	case rec.Hot == nil:
		return fmt.Errorf("archive segment %d: %w", id, backend.ErrNotFound)
	case only != "" && rec.Hot.Version != only:
		return nil // superseded
	}
	hot := *rec.Hot
	r, err := a.hot.Get(ctx, id, backend.GetOptions{Length: -1, Version: hot.Version})
	if errors.Is(err, backend.ErrStale) || errors.Is(err, backend.ErrNotFound) {
		return nil // overwritten or deleted since the record was read
	}
	if err != nil {
		return err
	}
	defer r.Close()
	cctx, stop, err := a.coldCtx(ctx, "archive", id)
	if err != nil {
		return err
	}
	defer stop()
	// Say before uploading that the bucket may soon hold an object the
	// index does not know: a crash or a lost reply must not leave one that
	// a delete would not look for.
	_, err = a.update(id, func(r *backend.Record) error {
		if r.Hot == nil || r.Hot.Version != hot.Version {
			return errSuperseded
		}
		r.Uploading = true
		return nil
	})
	if errors.Is(err, errSuperseded) {
		return nil
	}
	if err != nil {
		return err
	}
	stored, err := a.cold.Put(cctx, id, r, backend.PutOptions{Size: hot.Size, ModTime: hot.ModTime, Sums: hot.Sums})
	if err != nil {
		err = fencedCause(cctx, err)
		a.stats.ArchiveErrors.Add(1)
		return fmt.Errorf("archive segment %d: %w", id, err)
	}
	if stored.Size != hot.Size {
		a.stats.ArchiveErrors.Add(1)
		return fmt.Errorf("archive segment %d: cold tier stored %d bytes, expected %d", id, stored.Size, hot.Size)
	}
	// Fenced during the upload (the lease was lost or is about to expire):
	// do not commit. The hot copy stays, and U says the object may be in
	// the bucket; the lease's next holder may have changed the object
	// already, so the bucket must not be trusted to keep it.
	if err := a.coldWritable("archive", id); err != nil {
		// Deleted during the upload (deleteDeferred: a tombstone of any
		// version): what is left to delete is the version just uploaded
		// (it replaced any older one). Name it, so that a replay after
		// the lease went to another host and back deletes only that,
		// never an object the other host wrote since.
		v := stored.Version
		if _, uerr := a.update(id, func(r *backend.Record) error {
			if r.Hot == nil && r.Tomb != nil && *r.Tomb == "" && v != "" {
				r.Tomb = &v
			}
			return nil
		}); uerr != nil {
			a.log.Warn("could not name the version of a deleted segment's upload", "op", "archive", "segment", id, "err", uerr)
		}
		return err
	}
	stored.Sums, stored.ModTime, stored.WrittenAt = hot.Sums, hot.ModTime, hot.WrittenAt
	stored.Tier = segment.TierCold
	garbage := false
	_, err = a.update(id, func(r *backend.Record) error {
		// Whatever happened meanwhile, the bucket now holds what was just
		// uploaded under this id: any older object is replaced, so a
		// pending delete of it is done.
		r.Tomb, r.Uploading = nil, false
		switch {
		case r.Hot != nil && r.Hot.Version == hot.Version:
			a.lastUse.Remove(id)
			c := stored
			c.ModTime = r.Hot.ModTime // a touch during the upload
			r.Cold, r.Hot = &c, nil
		case r.Hot != nil:
			// Overwritten during the upload: the object is an older
			// version, masked by the hot one until that is archived.
			c := stored
			r.Cold = &c
		default:
			// Deleted or renamed away during the upload: the object is
			// garbage, never to be indexed.
			v := stored.Version
			r.Cold, r.Tomb, garbage = nil, &v, true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if garbage {
		if _, err := a.replayLocked(ctx, id); err != nil {
			a.log.Warn("deleting an upload that lost its segment deferred", "op", "archive", "segment", id, "err", err)
		}
		return nil
	}
	a.stats.Archived.Add(1)
	return nil
}

// pass is ArchivePass making room for need more bytes as well.
func (a *archiver) pass(ctx context.Context, need int64) int {
	if a.cold == nil {
		return 0
	}
	now := a.cfg.Now()
	var due, rest []segment.Info
	a.hot.List(ctx, func(i segment.Info) error {
		if now.Sub(i.WrittenAt) >= a.cfg.ArchiveAfter {
			due = append(due, i)
		} else {
			rest = append(rest, i)
		}
		return nil
	})
	usage := a.hot.Usage()
	for _, i := range due {
		usage -= i.Size
	}
	if usage+need > a.cfg.HotMaxBytes {
		sort.Slice(rest, func(i, j int) bool { return a.lastUsed(rest[i]).Before(a.lastUsed(rest[j])) })
		for _, i := range rest {
			if usage+need <= a.cfg.HotMaxBytes {
				break
			}
			due = append(due, i)
			usage -= i.Size
		}
	}
	return a.all(ctx, due, nil)
}

// all archives the given segments in parallel, calling done (if not
// nil) after each with its result. It returns how many succeeded.
func (a *archiver) all(ctx context.Context, segs []segment.Info, done func(segment.Info, error)) int {
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok int
	)
	sem := make(chan struct{}, a.cfg.ArchiveParallel)
	for _, info := range segs {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(info segment.Info) {
			defer func() { <-sem; wg.Done() }()
			err := a.archive(ctx, info.ID, "")
			if err != nil {
				a.lastErr.Store(&err)
				a.log.Warn("archive failed", "op", "archive", "segment", info.ID, "err", err)
			} else {
				a.lastErr.Store(nil)
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
