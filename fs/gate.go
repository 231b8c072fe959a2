package fs

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/scribefs/scribefs/segment"
)

// ErrUnmounted is returned for store calls after the mount was shut down (it
// becomes EIO), and by Server.Delete once the mount has ended.
var ErrUnmounted = errors.New("file system unmounted")

// gatedStore wraps the Store so that none of its methods runs once the mount
// has ended: after Shutdown (or an external unmount) returns, the caller may
// close the store even if some process still holds a file open on a lazily
// detached mount. close waits for the calls in flight.
type gatedStore struct {
	Store
	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

func (g *gatedStore) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.inflight.Add(1)
	return true
}

func (g *gatedStore) exit() { g.inflight.Done() }

// close shuts the gate and waits for the calls in flight. A call that is
// waiting for another one (Put reading from a pinned Reader) finds the gate
// shut instead of deadlocking.
func (g *gatedStore) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.inflight.Wait()
}

func (g *gatedStore) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	if !g.enter() {
		return segment.Info{}, ErrUnmounted
	}
	defer g.exit()
	return g.Store.Stat(ctx, id)
}

func (g *gatedStore) List(ctx context.Context, fn func(segment.Info) error) error {
	if !g.enter() {
		return ErrUnmounted
	}
	defer g.exit()
	return g.Store.List(ctx, fn)
}

func (g *gatedStore) Open(ctx context.Context, id segment.ID) (Reader, error) {
	if !g.enter() {
		return nil, ErrUnmounted
	}
	defer g.exit()
	r, err := g.Store.Open(ctx, id)
	if err != nil {
		return nil, err
	}
	return &gatedReader{Reader: r, g: g}, nil
}

func (g *gatedStore) Put(ctx context.Context, id segment.ID, r io.Reader, size int64, mtime time.Time) (segment.Info, error) {
	if !g.enter() {
		return segment.Info{}, ErrUnmounted
	}
	defer g.exit()
	return g.Store.Put(ctx, id, r, size, mtime)
}

func (g *gatedStore) PutStream(ctx context.Context, id segment.ID, r io.Reader, mtime func() time.Time) (segment.Info, error) {
	if !g.enter() {
		return segment.Info{}, ErrUnmounted
	}
	defer g.exit()
	return g.Store.PutStream(ctx, id, r, mtime)
}

func (g *gatedStore) Delete(ctx context.Context, id segment.ID) error {
	if !g.enter() {
		return ErrUnmounted
	}
	defer g.exit()
	return g.Store.Delete(ctx, id)
}

func (g *gatedStore) Rename(ctx context.Context, from, to segment.ID) error {
	if !g.enter() {
		return ErrUnmounted
	}
	defer g.exit()
	return g.Store.Rename(ctx, from, to)
}

func (g *gatedStore) SetModTime(ctx context.Context, id segment.ID, mtime time.Time) error {
	if !g.enter() {
		return ErrUnmounted
	}
	defer g.exit()
	return g.Store.SetModTime(ctx, id, mtime)
}

func (g *gatedStore) Space() (total, free uint64, err error) {
	if !g.enter() {
		return 0, 0, ErrUnmounted
	}
	defer g.exit()
	return g.Store.Space()
}

// gatedReader is a pinned version behind the gate. Close always goes
// through: resources are released even after the mount ended.
type gatedReader struct {
	Reader
	g *gatedStore
}

func (r *gatedReader) ReadAt(p []byte, off int64) (int, error) {
	if !r.g.enter() {
		return 0, ErrUnmounted
	}
	defer r.g.exit()
	return r.Reader.ReadAt(p, off)
}
