// Package mount runs one scribefs mount over an assembled store: Start
// brings the parts up in order (spool clean-up, the bucket's writer lease
// and, once it is held, the clean-up of uploads a crash left, the control
// socket, the store's background work, the first listing of the bucket,
// the FUSE server), Wait
// serves until the file system is unmounted, Shutdown unmounts it, and
// Close takes the rest down in reverse.
//
// cmd/scribefs reads the flags and the configuration, assembles the store
// and hands both here: this package reads no flags, environment or files of
// its own, and knows the cold tier only as the lease and upload clean-up
// the S3 backend offers.
package mount

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/fs"
	"github.com/scribefs/scribefs/internal/control"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

// Options say what to mount and how.
type Options struct {
	// Mountpoint is the absolute path to mount at.
	Mountpoint string
	// Store is the tiered store; FS is the same store as the file system
	// sees it (possibly observed by metrics).
	Store *tier.Store
	FS    fs.Store
	// S3 is the cold tier's S3 backend, for the writer lease and the
	// clean-up of incomplete uploads; nil without a cold tier.
	S3 *s3.Backend
	// HotPath is the hot-tier file: it names this mount as a lease holder
	// and places the control socket beside it.
	HotPath string
	// API serves the control socket; describe adds what only the mount
	// knows (the lease) to a status.
	API func(describe func(*control.Status)) control.API
	// Describe, when set, adds more to a status (recent errors, metrics).
	Describe func(*control.Status)

	AllowOther bool
	DebugFUSE  bool
	// TakeOver takes the writer lease even from a live holder.
	TakeOver bool
	// AssumeSoleWriter mounts writable even when the S3 store ignores
	// conditional puts ([storage.s3] assume_sole_writer).
	AssumeSoleWriter bool
	// LeaseTTL is the writer lease's lifetime without renewal (default
	// s3.DefaultLeaseTTL).
	LeaseTTL time.Duration
	// FirstListing bounds the wait for the first listing of the bucket
	// before the mount is served (default 10s); a larger bucket goes on
	// filling the index in the background.
	FirstListing time.Duration
	Log          *slog.Logger
}

// Mount is a running mount.
type Mount struct {
	opts   Options
	cancel context.CancelFunc
	lease  *LeaseKeeper
	ctl    *control.Server
	srv    *fs.Server
	fsrv   atomic.Pointer[fs.Server] // srv, for the control socket, once mounted
	done   chan struct{}             // closed when the store's background work returned
}

// mountAPI is the control socket's API of a running mount: the store's,
// except that a delete goes through the file system once it is mounted, so
// that `scribefs rm ID` and unlink of segments/<id> agree on what deleting a
// file open for writing means (the writer's close does not store it again;
// see fs.Server.Delete).
type mountAPI struct {
	control.API
	fsrv *atomic.Pointer[fs.Server]
}

func (a *mountAPI) Delete(ctx context.Context, id segment.ID) error {
	if srv := a.fsrv.Load(); srv != nil {
		err := srv.Delete(ctx, id)
		if !errors.Is(err, fs.ErrUnmounted) {
			return err
		}
		// Unmounted: no file is open through the mount any more.
	}
	return a.API.Delete(ctx, id)
}

// Start brings the mount up; on error everything started is taken down
// again.
func Start(ctx context.Context, o Options) (_ *Mount, err error) {
	if o.FirstListing == 0 {
		o.FirstListing = 10 * time.Second
	}
	log := o.Log
	ctx, cancel := context.WithCancel(ctx)
	m := &Mount{opts: o, cancel: cancel, done: make(chan struct{})}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if !o.Store.ReadOnly() {
		if n, err := fs.CleanSpool(o.Store.SpoolDir()); err != nil {
			close(m.done)
			return nil, err
		} else if n > 0 {
			log.Info("removed spool files of writes never closed before a crash", "op", "mount", "count", n)
		}
	}
	if o.S3 != nil && !o.Store.ReadOnly() {
		m.lease, err = KeepLease(ctx, LeaseOptions{
			S3: o.S3, Fence: o.Store, HotPath: o.HotPath, TakeOver: o.TakeOver,
			AssumeSoleWriter: o.AssumeSoleWriter, TTL: o.LeaseTTL, Log: log,
			OnHeld: func(ctx context.Context, l *s3.Lease, holding func() bool) {
				abortStaleUploads(ctx, o.S3, l, holding, time.After, log)
			},
		})
		if errors.Is(err, s3.ErrLeaseHeld) {
			err = fmt.Errorf("%w; mount --read-only, or use mount --take-over", err)
		}
		if err != nil {
			close(m.done)
			return nil, err
		}
	}
	describe := func(st *control.Status) {
		m.lease.Describe(st)
		if o.Describe != nil {
			o.Describe(st)
		}
	}
	api := &mountAPI{API: o.API(describe), fsrv: &m.fsrv}
	m.ctl, err = control.Serve(control.SocketPath(o.HotPath), api, log)
	if err != nil {
		close(m.done)
		return nil, err
	}
	go func() {
		defer close(m.done)
		o.Store.Run(ctx)
	}()
	if o.S3 != nil {
		// Give the first listing of the bucket a moment, so a fresh host's
		// first ls is complete.
		select {
		case <-o.Store.Synced():
		case <-time.After(o.FirstListing):
			log.Info("still listing the bucket; segments appear as they are indexed", "op", "reconcile")
		}
	}
	m.srv, err = fs.Mount(o.Mountpoint, o.FS, fs.Options{
		AllowOther: o.AllowOther,
		Debug:      o.DebugFUSE,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	m.fsrv.Store(m.srv)
	log.Info("mounted", "op", "mount", "mountpoint", o.Mountpoint, "read_only", o.Store.ReadOnly(), "pid", os.Getpid())
	return m, nil
}

// Wait blocks until the file system is unmounted.
func (m *Mount) Wait() { m.srv.Wait() }

// Shutdown unmounts, giving files open for writing grace to close.
func (m *Mount) Shutdown(grace time.Duration) error {
	if err := m.srv.Shutdown(grace); err != nil {
		return fmt.Errorf("unmount %s: %w", m.opts.Mountpoint, err)
	}
	return nil
}

// Close stops the store's background work, releases the writer lease and
// closes the control socket. Call it once the file system is unmounted.
func (m *Mount) Close() {
	m.cancel()
	<-m.done
	if m.ctl != nil {
		m.ctl.Close()
	}
	m.lease.Release()
}

// abortStaleUploads aborts the incomplete multipart uploads a crash left,
// only while the lease is held (holding), and never one begun after the
// lease was taken (by the store's own clock: the lease object's
// Last-Modified). A holder restarting after a crash (the lease was its
// own) aborts every older one at once: its previous process is gone.
// Otherwise a previous holder may still be finishing uploads it began
// shortly before (it stops before its lease could expire): those begun
// more than a TTL plus a margin before the lease was taken are aborted at
// once, the rest once that much time has passed (after waits).
func abortStaleUploads(ctx context.Context, b *s3.Backend, l *s3.Lease, holding func() bool, after func(time.Duration) <-chan time.Time, log *slog.Logger) {
	taken, err := l.ServerTime(ctx)
	if err != nil {
		log.Warn("could not clean up incomplete uploads", "op", "abort-uploads", "err", err)
		return
	}
	wait := l.TTL() + l.TTL()/4
	if l.Resumed() {
		wait = 0
	}
	if !abortUploadsBefore(ctx, b, taken.Add(-wait), holding, log) || wait == 0 {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-after(wait):
	}
	abortUploadsBefore(ctx, b, taken, holding, log)
}

// abortUploadsBefore aborts the uploads begun before cutoff if the lease
// is held; it reports whether it was.
func abortUploadsBefore(ctx context.Context, b *s3.Backend, cutoff time.Time, holding func() bool, log *slog.Logger) bool {
	if !holding() {
		return false
	}
	n, err := b.AbortIncompleteUploads(ctx, cutoff)
	if err != nil {
		log.Warn("could not clean up incomplete uploads", "op", "abort-uploads", "err", err)
	} else if n > 0 {
		log.Info("aborted incomplete uploads left by a crash", "op", "abort-uploads", "count", n, "begun_before", cutoff.UTC().Format(time.RFC3339))
	}
	return true
}
