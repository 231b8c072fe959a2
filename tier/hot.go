package tier

import (
	"context"
	"io"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// Hot is the hot tier as the store needs it: a backend.Backend whose
// versions can be pinned for readers, published conditionally, streamed in
// while a file is written, and renamed in place. backend/local (bbolt)
// implements it; its Put, PutIf, PutStream, Delete and Rename each advance
// the touched records' change numbers (see Index).
type Hot interface {
	backend.Backend

	// PutIf is Put that publishes the new version only if check accepts
	// the segment's record, in the transaction that would publish it;
	// otherwise it stores nothing and returns check's error.
	PutIf(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions, check func(backend.Record) error) (segment.Info, error)
	// PutStream is Put for bytes still being produced: r blocks until more
	// are available; mtime is asked for once r returned EOF. Nothing is
	// visible before the put returns.
	PutStream(ctx context.Context, id segment.ID, r io.Reader, mtime func() time.Time) (segment.Info, error)
	// PinCurrent pins the current version: its bytes stay readable through
	// ReadAt until release is called, whatever happens to the segment.
	PinCurrent(id segment.ID) (info segment.Info, release func(), err error)
	// ReadAt reads from a pinned version.
	ReadAt(version string, p []byte, off int64) (int, error)
	// Rename moves a segment to another id in one transaction (hot-only
	// stores; the tiered store renames through Index.Update).
	Rename(ctx context.Context, from, to segment.ID) error
	// Usage is the bytes of current hot versions.
	Usage() int64
	// Space reports the size and free bytes of the disk holding the tier.
	Space() (total, free uint64, err error)
}

// Index keeps one record per segment (backend.Record) beside the hot tier:
// the hot version, the indexed cold object, a pending cold delete, and a
// change number. Update is the one way to change records: one transaction
// that sees the current records and stores what its function changed,
// giving each changed record a new change number from Counter.
type Index interface {
	// Record returns id's record (an empty one when there is none).
	Record(id segment.ID) (backend.Record, error)
	// Update is one transition of the records of ids (see the package
	// doc); fn's error aborts it and is returned.
	Update(ids []segment.ID, fn func(recs []*backend.Record) error) ([]backend.Record, error)
	// Counter is the change counter: later transitions get larger numbers.
	Counter() (uint64, error)
	// ForgetDeleted drops the change numbers of records left with nothing
	// whose last change is at most upTo.
	ForgetDeleted(upTo uint64) (int, error)
	// List calls fn for every cold entry in ascending id order, without
	// checksums, never holding a transaction across fn.
	List(fn func(segment.Info) error) error
	// Live calls fn for every segment readers see, ascending: its hot
	// version when it has one, else its cold entry, without checksums. A
	// segment that moves between the tiers during the listing is listed
	// exactly once (each id is decided from one state of its record).
	Live(ctx context.Context, fn func(segment.Info) error) error
	// After returns up to n cold entries with ids above id, ascending.
	After(id segment.ID, n int) ([]segment.Info, error)
	// Tombstones returns the pending cold deletes: id -> version.
	Tombstones() (map[segment.ID]string, error)
	// MarkReconciled records that the index matched a full listing at t;
	// Reconciled returns the last such time.
	MarkReconciled(t time.Time) error
	Reconciled() (time.Time, bool)
}
