package tier

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
	"golang.org/x/sync/singleflight"
)

// reconciler keeps the index in line with the bucket: full passes over
// its listing (Reconcile), lookups of what a listing could not tell
// (resolve), lookups of the bucket before the first pass (lookup), and the
// deletes deferred while S3 was unavailable (replay).
type reconciler struct {
	*parts

	// synced is set once the index has been reconciled with a full bucket
	// listing in this process; syncedCh is closed then.
	synced   atomic.Bool
	syncedCh chan struct{}
	// indexTrusted: an earlier process reconciled the index with the
	// bucket, so a miss in it means "no such segment" even before this
	// process's first listing (other writers' new objects appear at the
	// next refresh).
	indexTrusted bool

	reconciling singleflight.Group
	// pass makes passes one at a time: a pass forgets the deleted markers
	// older than its start, which another pass begun earlier still needs.
	pass sync.Mutex
}

// reconcileBatch is how many listed entries one transition applies.
const reconcileBatch = 1000

func ids(infos []segment.Info) []segment.ID {
	out := make([]segment.ID, len(infos))
	for i, info := range infos {
		out[i] = info.ID
	}
	return out
}

// reconcileOnce reconciles unless another caller is already doing it, in
// which case it waits for that one.
func (rc *reconciler) reconcileOnce(ctx context.Context) error {
	_, err, _ := rc.reconciling.Do("reconcile", func() (any, error) {
		if rc.synced.Load() {
			return nil, nil
		}
		return nil, rc.Reconcile(ctx)
	})
	return err
}

// Reconcile brings the index in line with a full listing of the cold tier:
// objects other writers added appear, objects they removed disappear.
// Entries whose version did not change keep what the index knew of them
// (checksums, mtime set through scribefs).
//
// A listing is a picture of the past: the pass applies what it saw only to
// records that did not change since it began (their change number is at
// most the counter read before listing), and leaves alone records with a
// pending delete. A segment deleted, archived, renamed or written during
// the pass is the next pass's business.
func (rc *reconciler) Reconcile(ctx context.Context) error {
	if rc.cold == nil {
		return nil
	}
	rc.pass.Lock()
	defer rc.pass.Unlock()
	start, err := rc.index.Counter()
	if err != nil {
		return err
	}
	began := time.Now()
	known := pull(func(yield func(segment.Info) error) error { return rc.index.List(yield) })
	defer known.stop()
	k, kok := known.next()
	var add, gone []segment.Info
	unresolved := 0
	flush := func(force bool) error {
		if len(add) >= reconcileBatch || force && len(add) > 0 {
			if err := rc.applyListed(add, start); err != nil {
				return err
			}
			add = add[:0]
		}
		if len(gone) >= reconcileBatch || force && len(gone) > 0 {
			if err := rc.applyGone(gone, start); err != nil {
				return err
			}
			gone = gone[:0]
		}
		return nil
	}
	err = rc.cold.List(ctx, func(c segment.Info) error {
		for kok && k.ID < c.ID {
			gone = append(gone, k)
			k, kok = known.next()
		}
		same := kok && k.ID == c.ID && k.Version == c.Version
		if same && k.Unresolved {
			unresolved++
		}
		if kok && k.ID == c.ID {
			k, kok = known.next()
		}
		if !same {
			if c.Unresolved {
				unresolved++
			}
			add = append(add, c)
		}
		return flush(false)
	})
	if err != nil {
		return err
	}
	for ; kok; k, kok = known.next() {
		gone = append(gone, k)
		if err := flush(false); err != nil {
			return err
		}
	}
	if err := known.err(); err != nil {
		return err
	}
	if err := flush(true); err != nil {
		return err
	}
	if _, err := rc.index.ForgetDeleted(start); err != nil {
		return err
	}
	if rc.synced.CompareAndSwap(false, true) {
		close(rc.syncedCh)
	}
	if err := rc.index.MarkReconciled(began); err != nil {
		return err
	}
	if unresolved == 0 {
		return nil
	}
	return rc.resolveAll(ctx)
}

// applyListed records listed objects the index lacks or knows in another
// version, in records unchanged since the pass began and with no delete
// pending.
func (rc *reconciler) applyListed(listed []segment.Info, start uint64) error {
	_, err := rc.index.Update(ids(listed), func(rs []*backend.Record) error {
		for i, r := range rs {
			c := listed[i]
			if r.Change > start || r.Tomb != nil || r.Cold != nil && r.Cold.Version == c.Version {
				continue
			}
			c.Tier = segment.TierCold
			r.Cold = &c
		}
		return nil
	})
	return err
}

// applyGone forgets index entries the listing did not show, in records
// unchanged since the pass began.
func (rc *reconciler) applyGone(gone []segment.Info, start uint64) error {
	_, err := rc.index.Update(ids(gone), func(rs []*backend.Record) error {
		for i, r := range rs {
			if r.Change > start || r.Cold == nil || r.Cold.Version != gone[i].Version {
				continue
			}
			r.Cold = nil
		}
		return nil
	})
	return err
}

// resolve asks the cold tier once for what a listing could not tell (the
// decoded size and mtime of a Scribe Ledger object) and keeps it, if the
// record did not change meanwhile and the entry is still unresolved (a
// touch of the segment in between is not undone).
func (rc *reconciler) resolve(ctx context.Context, listed segment.Info) (segment.Info, error) {
	before, err := rc.index.Record(listed.ID)
	if err != nil {
		return segment.Info{}, err
	}
	info, err := rc.cold.Stat(ctx, listed.ID)
	if err != nil {
		return segment.Info{}, err
	}
	info.Tier = segment.TierCold
	rec, err := rc.update(listed.ID, func(r *backend.Record) error {
		if r.Change == before.Change && r.Cold != nil && r.Cold.Version == listed.Version && r.Cold.Unresolved {
			r.Cold = &info
		}
		return nil
	})
	if err != nil {
		return segment.Info{}, err
	}
	if rec.Cold != nil && rec.Cold.Version == info.Version && !rec.Cold.Unresolved {
		return *rec.Cold, nil // what the index holds now, touches included
	}
	return info, nil
}

// resolveAll resolves every unresolved index entry, a few at a time.
func (rc *reconciler) resolveAll(ctx context.Context) error {
	var todo []segment.Info
	if err := rc.index.List(func(i segment.Info) error {
		if i.Unresolved {
			todo = append(todo, i)
		}
		return nil
	}); err != nil {
		return err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, 8)
	for _, info := range todo {
		sem <- struct{}{}
		wg.Add(1)
		go func(info segment.Info) {
			defer func() { <-sem; wg.Done() }()
			if _, err := rc.resolve(ctx, info); err != nil && !errors.Is(err, backend.ErrNotFound) {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}(info)
	}
	wg.Wait()
	return first
}

// replay carries out deletes recorded while S3 was unavailable, each under
// its segment's lock and only while the tombstone is still the record's
// state.
func (rc *reconciler) replay(ctx context.Context) (done int, err error) {
	if rc.cold == nil || rc.cfg.ReadOnly || rc.coldWritable("replay deletes of", 0) != nil {
		return 0, nil
	}
	tombs, err := rc.index.Tombstones()
	if err != nil {
		return 0, err
	}
	ids := make([]segment.ID, 0, len(tombs))
	for id := range tombs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	for _, id := range ids {
		if err := rc.locks.lock(ctx, id); err != nil {
			return done, err
		}
		ok, err := rc.replayLocked(ctx, id)
		rc.locks.unlock(id)
		if err != nil {
			return done, err
		}
		if ok {
			done++
		}
	}
	return done, nil
}

// lookup answers from the index, asking S3 only while the index has not
// yet been reconciled with a full listing.
func (rc *reconciler) lookup(ctx context.Context, id segment.ID) (segment.Info, error) {
	notFound := fmt.Errorf("segment %d: %w", id, backend.ErrNotFound)
	if rc.cold == nil {
		return segment.Info{}, notFound
	}
	rec, err := rc.index.Record(id)
	if err != nil {
		return segment.Info{}, err
	}
	switch {
	case rec.Cold != nil && rec.Cold.Unresolved:
		return rc.resolve(ctx, *rec.Cold)
	case rec.Cold != nil:
		return *rec.Cold, nil
	case rec.Tomb != nil, rc.authoritative():
		return segment.Info{}, notFound
	}
	info, err := rc.cold.Stat(ctx, id)
	if err != nil {
		return segment.Info{}, err
	}
	// Learn it, unless the record changed while S3 was asked.
	rc.update(id, func(r *backend.Record) error {
		if r.Change == rec.Change && r.Cold == nil && r.Tomb == nil {
			r.Cold = &info
		}
		return nil
	})
	return info, nil
}

// authoritative reports whether a miss in the index means the bucket
// has no such object (the index has been reconciled with a listing, in this
// process or an earlier one).
func (rc *reconciler) authoritative() bool { return rc.synced.Load() || rc.indexTrusted }
