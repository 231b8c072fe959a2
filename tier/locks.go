package tier

import (
	"context"
	"sync"

	"github.com/scribefs/scribefs/segment"
)

// segmentLocks are the per-segment locks that serialise a store's changes
// to one segment's object in the cold tier: an upload and its commit, a
// cold delete and its commit, a tombstone replay. Hot-tier changes do not
// take them; they are ordered against these by the change numbers of the
// segment's record. The zero value is ready to use.
type segmentLocks struct {
	mu   sync.Mutex // guards held
	held map[segment.ID]*segmentLock
}

type segmentLock struct {
	slot chan struct{} // holds a token while locked
	refs int           // holders and waiters; the entry goes at zero
}

func (l *segmentLocks) entry(id segment.ID) *segmentLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held == nil {
		l.held = map[segment.ID]*segmentLock{}
	}
	e := l.held[id]
	if e == nil {
		e = &segmentLock{slot: make(chan struct{}, 1)}
		l.held[id] = e
	}
	e.refs++
	return e
}

func (l *segmentLocks) drop(id segment.ID, e *segmentLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(l.held, id)
	}
}

// lock waits for id's lock, or for ctx to end.
func (l *segmentLocks) lock(ctx context.Context, id segment.ID) error {
	e := l.entry(id)
	select {
	case e.slot <- struct{}{}:
		return nil
	case <-ctx.Done():
		l.drop(id, e)
		return ctx.Err()
	}
}

// tryLock takes id's lock if it is free.
func (l *segmentLocks) tryLock(id segment.ID) bool {
	e := l.entry(id)
	select {
	case e.slot <- struct{}{}:
		return true
	default:
		l.drop(id, e)
		return false
	}
}

// unlock releases id's lock, which the caller holds.
func (l *segmentLocks) unlock(id segment.ID) {
	l.mu.Lock()
	e := l.held[id]
	l.mu.Unlock()
	<-e.slot
	l.drop(id, e)
}
