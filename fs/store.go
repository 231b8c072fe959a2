package fs

import (
	"context"
	"io"
	"time"

	"github.com/scribefs/scribefs/segment"
)

// Store is everything the filesystem needs of the segment store. The tiered
// store (package tier) implements it; tests may use a small in-memory one.
// Errors are the sentinel errors of package backend (and segment.ErrChecksum),
// possibly wrapped; toErrno turns them into errnos in one place.
type Store interface {
	// Stat describes a segment without fetching its data.
	Stat(ctx context.Context, id segment.ID) (segment.Info, error)
	// List calls fn for every segment, ascending by id, without fetching data.
	List(ctx context.Context, fn func(segment.Info) error) error
	// Open pins the current version of a segment for reading: the returned
	// Reader keeps serving those bytes through later overwrites, deletes and
	// archival, until it is closed.
	Open(ctx context.Context, id segment.ID) (Reader, error)
	// Put replaces the segment with size bytes read from r, atomically and
	// durably (when Put returns nil the new version survives a crash).
	Put(ctx context.Context, id segment.ID, r io.Reader, size int64, mtime time.Time) (segment.Info, error)
	// PutStream is Put for bytes still being produced: r blocks until more
	// are available and returns EOF at the end; mtime is called once r
	// returned EOF, for the mtime to record. Nothing is visible before
	// then, and when r fails nothing is stored.
	PutStream(ctx context.Context, id segment.ID, r io.Reader, mtime func() time.Time) (segment.Info, error)
	// Delete removes the segment from every tier.
	Delete(ctx context.Context, id segment.ID) error
	// Rename makes segment from available as to (replacing to) and removes
	// from; readers see either the old or the new state, never a mix.
	Rename(ctx context.Context, from, to segment.ID) error
	// SetModTime changes the user-visible mtime of a segment.
	SetModTime(ctx context.Context, id segment.ID, mtime time.Time) error
	// MaxSegmentBytes is the largest segment the store accepts.
	MaxSegmentBytes() int64
	// SpoolDir is where the filesystem stages files open for writing.
	SpoolDir() string
	// Space reports the capacity and free bytes for statfs.
	Space() (total, free uint64, err error)
	// ReadOnly reports whether the store refuses every change. The store
	// is the one place read-only is decided: the mount follows it (the
	// kernel is told "ro", and every change answers EROFS at once).
	ReadOnly() bool
}

// Reader reads one pinned version of a segment.
type Reader interface {
	io.ReaderAt
	// Info describes the pinned version.
	Info() segment.Info
	Close() error
}
