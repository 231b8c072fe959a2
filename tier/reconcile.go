package tier

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// reconcileOnce reconciles unless another caller is already doing it, in
// which case it waits for that one.
func (s *Store) reconcileOnce(ctx context.Context) error {
	_, err, _ := s.reconciling.Do("reconcile", func() (any, error) {
		if s.synced.Load() {
			return nil, nil
		}
		return nil, s.Reconcile(ctx)
	})
	return err
}

// reconcileBatch is how many listed entries one transition applies.
const reconcileBatch = 1000

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
func (s *Store) Reconcile(ctx context.Context) error {
	if s.cold == nil {
		return nil
	}
	start, err := s.index.Counter()
	if err != nil {
		return err
	}
	began := time.Now()
	known := pull(func(yield func(segment.Info) error) error { return s.index.List(yield) })
	defer known.stop()
	k, kok := known.next()
	var add, gone []segment.Info
	unresolved := 0
	flush := func(force bool) error {
		if len(add) >= reconcileBatch || force && len(add) > 0 {
			if err := s.applyListed(add, start); err != nil {
				return err
			}
			add = add[:0]
		}
		if len(gone) >= reconcileBatch || force && len(gone) > 0 {
			if err := s.applyGone(gone, start); err != nil {
				return err
			}
			gone = gone[:0]
		}
		return nil
	}
	err = s.cold.List(ctx, func(c segment.Info) error {
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
	if _, err := s.index.ForgetDeleted(start); err != nil {
		return err
	}
	if s.synced.CompareAndSwap(false, true) {
		close(s.syncedCh)
	}
	if err := s.index.MarkReconciled(began); err != nil {
		return err
	}
	if unresolved == 0 {
		return nil
	}
	return s.resolveAll(ctx)
}

func ids(infos []segment.Info) []segment.ID {
	out := make([]segment.ID, len(infos))
	for i, info := range infos {
		out[i] = info.ID
	}
	return out
}

// applyListed records listed objects the index lacks or knows in another
// version, in records unchanged since the pass began and with no delete
// pending.
func (s *Store) applyListed(listed []segment.Info, start uint64) error {
	_, err := s.index.Update(ids(listed), func(rs []*backend.Record) error {
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
func (s *Store) applyGone(gone []segment.Info, start uint64) error {
	_, err := s.index.Update(ids(gone), func(rs []*backend.Record) error {
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
// entry is still the one resolved.
func (s *Store) resolve(ctx context.Context, listed segment.Info) (segment.Info, error) {
	info, err := s.cold.Stat(ctx, listed.ID)
	if err != nil {
		return segment.Info{}, err
	}
	_, err = s.update(listed.ID, func(r *backend.Record) error {
		if r.Cold != nil && r.Cold.Version == listed.Version {
			r.Cold = &info
		}
		return nil
	})
	if err != nil {
		return segment.Info{}, err
	}
	return info, nil
}

// resolveAll resolves every unresolved index entry, a few at a time.
func (s *Store) resolveAll(ctx context.Context) error {
	var todo []segment.Info
	if err := s.index.List(func(i segment.Info) error {
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
			if _, err := s.resolve(ctx, info); err != nil && !errors.Is(err, backend.ErrNotFound) {
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
