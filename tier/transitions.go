package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// The transitions of a segment's record that involve the cold tier. The
// package doc has the state table and the lock order.

// Delete removes a segment from every tier. The bucket's object is deleted
// before the record says so: a cold delete that fails for good (denied,
// fenced) fails the rm and changes nothing. One that cannot be carried out
// now (S3 unavailable) is recorded as a tombstone and replayed later; the
// segment is gone for readers at once either way. While an upload or
// another cold change of the segment is in flight, Delete does not wait for
// it: it records the delete with a tombstone of any version, which the
// upload's commit or a replay carries out.
func (s *Store) Delete(ctx context.Context, id segment.ID) error {
	if err := s.writable("delete", id); err != nil {
		return err
	}
	if s.cold == nil {
		return s.hot.Delete(ctx, id, "")
	}
	if !s.locks.tryLock(id) {
		return s.deleteDeferred(id)
	}
	defer s.locks.unlock(id)
	rec, err := s.index.Record(id)
	if err != nil {
		return err
	}
	// What does the bucket hold under this id?
	var (
		version string
		inCold  bool // an object to delete (of version, "" for any)
	)
	switch {
	case rec.Uploading:
		// An upload that may have landed unrecorded (a crash, a lost
		// reply): whatever the bucket holds goes.
		inCold = true
	case rec.Cold != nil:
		version, inCold = rec.Cold.Version, true
	case rec.Tomb != nil, s.recon.authoritative():
		// Nothing, or a delete already pending that stays pending.
	default:
		// The index does not know the bucket yet: ask it.
		info, err := s.cold.Stat(ctx, id)
		switch {
		case err == nil:
			version, inCold = info.Version, true
		case errors.Is(err, backend.ErrNotFound):
		case backend.IsTransient(err) && rec.Hot != nil:
			inCold = true // cannot tell: delete any version there may be
		default:
			return err
		}
	}
	if !inCold && rec.Hot == nil {
		return fmt.Errorf("delete segment %d: %w", id, backend.ErrNotFound)
	}
	var tomb *string
	if inCold {
		cctx, stop, err := s.coldCtx(ctx, "delete", id)
		if err != nil {
			return err
		}
		err = fencedCause(cctx, s.cold.Delete(cctx, id, version))
		stop()
		switch {
		case err == nil, errors.Is(err, backend.ErrNotFound):
		case errors.Is(err, backend.ErrStale):
			// Another writer stored a newer object: it is theirs to keep,
			// and a reconcile lists it.
		case backend.IsTransient(err):
			s.log.Warn("cold delete deferred", "op", "delete", "segment", id, "err", err)
			tomb = &version
		default:
			return fmt.Errorf("delete segment %d: %w", id, err)
		}
	}
	lost := false
	_, err = s.update(id, func(r *backend.Record) error {
		// Renamed away meanwhile (the rename did not wait for this lock):
		// the rm found nothing left to remove.
		lost = rec.Hot != nil && r.Hot == nil && r.Cold == nil
		r.Hot, r.Cold, r.Uploading = nil, nil, false
		if tomb != nil {
			r.Tomb = tomb
		}
		// A change even when the index knew nothing of the segment: a
		// reconcile pass or a lookup that saw its object before the delete
		// must not record it afterwards.
		r.Touch = true
		return nil
	})
	s.arch.forget(id)
	if err == nil && lost {
		err = fmt.Errorf("delete segment %d: %w", id, backend.ErrNotFound)
	}
	return err
}

// deleteDeferred deletes a segment whose cold object is being changed by
// someone else right now (an upload, most likely): readers lose it at once,
// and a tombstone of any version makes sure that whatever that change
// leaves in the bucket is deleted too.
func (s *Store) deleteDeferred(id segment.ID) error {
	_, err := s.update(id, func(r *backend.Record) error {
		if !r.Live() {
			return fmt.Errorf("delete segment %d: %w", id, backend.ErrNotFound)
		}
		anyVersion := ""
		r.Hot, r.Cold, r.Tomb, r.Uploading = nil, nil, &anyVersion, false
		return nil
	})
	s.arch.forget(id)
	return err
}

// Rename makes from available as to and removes from. Readers see the old
// state or the new, never a mix. A cold-only from is first copied into the
// hot tier under its own id (the same bytes), and from's object is deleted
// from the bucket before the record moves, so a cold delete that fails for
// good fails the rename with both names as they were.
func (s *Store) Rename(ctx context.Context, from, to segment.ID) error {
	if err := s.writable("rename", from); err != nil {
		return err
	}
	if from == to {
		_, err := s.Stat(ctx, from)
		return err
	}
	if s.cold == nil {
		err := s.hot.Rename(ctx, from, to)
		if err == nil {
			s.arch.forget(from)
		}
		return err
	}
	for attempt := 0; ; attempt++ {
		// The archiver may make from cold again between the copy and the
		// move: then copy again.
		err := s.renameOnce(ctx, from, to)
		if !errors.Is(err, errMoved) || attempt == 3 {
			if err == nil {
				s.arch.forget(from)
			}
			return err
		}
	}
}

func (s *Store) renameOnce(ctx context.Context, from, to segment.ID) error {
	if err := s.hydrate(ctx, from); err != nil {
		return err
	}
	var tomb *string
	if s.locks.tryLock(from) {
		defer s.locks.unlock(from)
		rec, err := s.index.Record(from)
		if err != nil {
			return err
		}
		switch {
		case rec.Hot == nil && rec.Cold != nil:
			// Archived again since the copy was made: copy again, before
			// the object is touched.
			return errMoved
		case rec.Hot == nil:
			return fmt.Errorf("rename segment %d: %w", from, backend.ErrNotFound)
		case rec.Cold != nil || rec.Uploading:
			cctx, stop, err := s.coldCtx(ctx, "rename", from)
			if err != nil {
				return err
			}
			v := ""
			if rec.Cold != nil && !rec.Uploading {
				v = rec.Cold.Version
			}
			err = fencedCause(cctx, s.cold.Delete(cctx, from, v))
			stop()
			switch {
			case err == nil, errors.Is(err, backend.ErrNotFound), errors.Is(err, backend.ErrStale):
			case backend.IsTransient(err):
				s.log.Warn("cold delete deferred", "op", "rename", "segment", from, "err", err)
				tomb = &v
			default:
				return fmt.Errorf("rename segment %d: %w", from, err)
			}
		case rec.Tomb == nil && !s.recon.authoritative():
			// The bucket may hold an older object the index has not
			// learnt of yet: delete any there may be, later.
			anyVersion := ""
			tomb = &anyVersion
		}
	} else {
		anyVersion := "" // a cold change of from is in flight: see deleteDeferred
		tomb = &anyVersion
	}
	_, err := s.index.Update([]segment.ID{from, to}, func(rs []*backend.Record) error {
		f, t := rs[0], rs[1]
		switch {
		case f.Hot == nil && f.Cold != nil:
			return errMoved
		case f.Hot == nil:
			return fmt.Errorf("rename segment %d: %w", from, backend.ErrNotFound)
		}
		// to keeps its cold entry (if any): an older version, now masked
		// by the hot one, as after an overwrite.
		t.Hot, f.Hot, f.Cold, f.Uploading = f.Hot, nil, nil, false
		f.Touch = true
		if tomb != nil {
			f.Tomb = tomb
		}
		return nil
	})
	return err
}

// hydrate gives a cold-only segment a hot copy of the same bytes: the copy
// is published only while the record still holds that cold version and no
// hot one. A segment that is hot already, or gone, is left as it is.
func (s *Store) hydrate(ctx context.Context, id segment.ID) error {
	for attempt := 0; ; attempt++ {
		if _, err := s.Stat(ctx, id); err != nil {
			return err
		}
		rec, err := s.index.Record(id)
		if err != nil || rec.Hot != nil || rec.Cold == nil {
			return err
		}
		cold := *rec.Cold
		err = s.copyToHot(ctx, id, cold)
		if !errors.Is(err, errMoved) || attempt == 3 {
			return err
		}
	}
}

// errMoved is a hydration's copy found its record moved on.
var errMoved = fmt.Errorf("%w: the segment changed while it was copied", backend.ErrStale)

func (s *Store) copyToHot(ctx context.Context, id segment.ID, cold segment.Info) error {
	r, err := s.Open(ctx, id)
	if err != nil {
		return err
	}
	defer r.Close()
	info := r.Info()
	if info.Tier == segment.TierHot || info.Version != cold.Version {
		return errMoved
	}
	_, err = s.hot.PutIf(ctx, id, io.NewSectionReader(r, 0, info.Size),
		backend.PutOptions{Size: info.Size, ModTime: info.ModTime, Sums: info.Sums},
		func(rec backend.Record) error {
			if rec.Hot != nil || rec.Cold == nil || rec.Cold.Version != cold.Version {
				return errMoved
			}
			return nil
		})
	return err
}

// SetModTime changes a segment's user-visible mtime. For a cold segment the
// new mtime is kept in the index (the object is not rewritten).
func (s *Store) SetModTime(ctx context.Context, id segment.ID, mtime time.Time) error {
	if err := s.writable("set mtime of", id); err != nil {
		return err
	}
	if _, err := s.Stat(ctx, id); err != nil {
		return err
	}
	_, err := s.update(id, func(r *backend.Record) error {
		switch {
		case r.Hot != nil:
			r.Hot.ModTime = mtime
		case r.Cold != nil:
			r.Cold.ModTime = mtime
		default:
			return fmt.Errorf("set mtime of segment %d: %w", id, backend.ErrNotFound)
		}
		return nil
	})
	return err
}

// Archive moves one segment from the hot tier to the cold tier. It waits
// for any cold change of the segment already in flight, uploads the current
// hot version, checks what the server stored, and then, in one transition,
// records the object in the index and drops the hot copy, only if that
// version is still the current one. A segment already cold is left alone.
func (s *Store) Archive(ctx context.Context, id segment.ID) error { return s.arch.archive(ctx, id, "") }

// ReplayTombstones carries out deletes recorded while S3 was unavailable,
// each under its segment's lock and only while the tombstone is still the
// record's state. It returns how many it carried out.
func (s *Store) ReplayTombstones(ctx context.Context) (int, error) { return s.recon.replay(ctx) }
