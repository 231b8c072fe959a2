// Package backend defines the one interface every segment store implements,
// and the errors they return.
//
// A Backend stores whole segments keyed by segment.ID. The bbolt hot tier
// (backend/local) and the S3 cold tier (backend/s3) implement it; retry and
// other cross-cutting behaviour are wrappers around it (backend/retry), and
// the tiered store composes backends (segment/tier). Every implementation and
// wrapper must pass the conformance suite in backend/backendtest.
//
// A backend converts its native errors at its own edge into the sentinel
// errors below, so callers test them with errors.Is and never see SDK or bbolt
// error types. Backends never return syscall errnos: that mapping belongs to
// the filesystem layer.
package backend

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/scribefs/scribefs/segment"
)

// Backend is a store of segments. All methods are safe for concurrent use.
// Changes of one id (Put, Delete) are atomic each, but a backend may keep
// things beside a segment (the S3 backend's Scribe Ledger sidecar) that
// two changes of the same id racing could leave describing the other:
// callers serialise the changes of one id, as the tier does (its L(id)).
type Backend interface {
	// Put stores the bytes read from r until EOF as segment id, replacing any
	// previous version. It is atomic: until Put returns nil, Get and Stat see
	// the previous version (or ErrNotFound); afterwards they see the new one
	// in full. A Put that returns nil is durable. On error nothing changes.
	// opts.Size, when not negative, is the exact length r will yield; a
	// mismatch fails with ErrInvalid.
	Put(ctx context.Context, id segment.ID, r io.Reader, opts PutOptions) (segment.Info, error)

	// Get returns a reader of the segment's bytes from opts.Offset, for
	// opts.Length bytes, or to the end when Length is negative. A range that
	// extends past the end is cut at the end; an offset at or past the end
	// yields an empty reader. When opts.Version is set and the stored version
	// differs, Get fails with ErrStale. Missing segment: ErrNotFound. The
	// caller must Close the reader.
	Get(ctx context.Context, id segment.ID, opts GetOptions) (io.ReadCloser, error)

	// Stat returns the segment's Info, or ErrNotFound.
	Stat(ctx context.Context, id segment.ID) (segment.Info, error)

	// Delete removes the segment. When ifVersion is set, only that version is
	// removed: a different stored version fails with ErrStale. Deleting a
	// missing segment returns ErrNotFound.
	Delete(ctx context.Context, id segment.ID, ifVersion string) error

	// List calls fn for every segment in ascending ID order, streaming: an
	// implementation must not hold the whole listing in memory. An error from
	// fn stops the listing and is returned.
	List(ctx context.Context, fn func(segment.Info) error) error

	// Close releases the backend's resources.
	Close() error
}

// PutOptions qualify a Put.
type PutOptions struct {
	// Size is the exact number of bytes r yields, or -1 when unknown.
	Size int64
	// ModTime is the user-visible mtime to record; zero means now.
	ModTime time.Time
	// Sums, when set, are the checksums the caller computed for the bytes;
	// the backend verifies what it stored against them and fails with
	// segment.ErrChecksum on a mismatch (nothing is left stored).
	Sums *segment.Checksums
	// Compression is the representation r's bytes are in when a wrapper
	// encoded them, as Stat will report it ("gzip-blocks", "zstd-blocks");
	// empty for the segment's own bytes. Backends that store whatever they
	// are given ignore it; the S3 backend needs it to describe the segment
	// to Scribe Ledger nodes (backend/s3, sidecar.go).
	Compression string
}

// GetOptions qualify a Get.
type GetOptions struct {
	Offset  int64
	Length  int64 // -1: to the end
	Version string
	// Compression is the representation Stat reported for Version; Offset
	// and Length always count decoded bytes. Backends that store plain
	// bytes ignore it.
	Compression string
}

// Whole is the GetOptions for reading an entire segment.
var Whole = GetOptions{Length: -1}

// Sentinel errors. Backends wrap them with context (the segment, the
// operation); callers test with errors.Is.
var (
	// ErrNotFound is returned when the segment does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable is returned for transient failures worth retrying:
	// timeouts, connection resets, 5xx replies, throttling.
	ErrUnavailable = errors.New("unavailable")
	// ErrInvalid is returned when the request itself is wrong (a bad size,
	// an invalid argument); retrying it cannot help.
	ErrInvalid = errors.New("invalid")
	// ErrTooLarge is returned when a segment would exceed the configured
	// maximum segment size.
	ErrTooLarge = errors.New("segment too large")
	// ErrStale is returned when a conditional operation finds a different
	// version than the one it names.
	ErrStale = errors.New("version changed")
	// ErrPermission is returned when the store refuses access (bad
	// credentials, access denied, a read-only store).
	ErrPermission = errors.New("permission denied")
	// ErrNoSpace is returned when the store has no room for a write.
	ErrNoSpace = errors.New("no space")
	// ErrReadOnly is returned by writes to a store opened read-only.
	ErrReadOnly = errors.New("read-only")
)

// Errors of a transient kind are worth retrying; everything else is final.
func IsTransient(err error) bool { return errors.Is(err, ErrUnavailable) }

// Fill reads from r into buf until buf is full or r ends, for a Put that
// consumes its source in fixed-size pieces. Unlike io.ReadFull it returns
// io.EOF only for a clean end of r, also after a short read: an
// io.ErrUnexpectedEOF from r itself (an HTTP body whose sender went away
// mid-way) is passed on as a failure of the put, never taken as the end of
// the segment.
func Fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// MerkleRoots is implemented by a backend that keeps, beside some segments,
// a Merkle root of their content that another program recorded (the S3
// backend: the merkle_root of a Scribe Ledger sidecar). Wrappers do not
// implement it; find it with AsMerkleRoots.
type MerkleRoots interface {
	// MerkleRoot returns the root recorded for segment id, or nil when
	// none is; an error when the record exists but cannot be read or is
	// malformed.
	MerkleRoot(ctx context.Context, id segment.ID) ([]byte, error)
}

// AsMerkleRoots returns the MerkleRoots that b is or wraps (through Unwrap
// methods), and false when there is none.
func AsMerkleRoots(b Backend) (MerkleRoots, bool) {
	for b != nil {
		if m, ok := b.(MerkleRoots); ok {
			return m, true
		}
		u, ok := b.(interface{ Unwrap() Backend })
		if !ok {
			return nil, false
		}
		b = u.Unwrap()
	}
	return nil, false
}
