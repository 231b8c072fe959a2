package backend

import (
	"context"
	"errors"

	"github.com/scribefs/scribefs/segment"
)

// ErrorKind names what kind of failure an error is: which sentinel it
// wraps. It is the one classification of errors; every edge that must tell
// them apart maps a kind to its own terms (fs: an errno; metrics: a label;
// the control socket: a wire code and HTTP status), so they all agree. The
// names are stable: they are metric labels and wire codes.
type ErrorKind string

// The kinds, in the order Kind tests them: an error that wraps several
// sentinels (a checksum failure reported as unavailable, say) is the first.
const (
	KindOK          ErrorKind = "ok"
	KindNotFound    ErrorKind = "not_found"   // ErrNotFound
	KindTooLarge    ErrorKind = "too_large"   // ErrTooLarge
	KindNoSpace     ErrorKind = "no_space"    // ErrNoSpace
	KindReadOnly    ErrorKind = "read_only"   // ErrReadOnly
	KindPermission  ErrorKind = "permission"  // ErrPermission
	KindInvalidID   ErrorKind = "invalid_id"  // segment.ErrInvalidID
	KindInvalid     ErrorKind = "invalid"     // ErrInvalid
	KindStale       ErrorKind = "stale"       // ErrStale
	KindChecksum    ErrorKind = "checksum"    // segment.ErrChecksum
	KindUnavailable ErrorKind = "unavailable" // ErrUnavailable
	KindCanceled    ErrorKind = "canceled"    // context.Canceled: the caller gave up
	KindDeadline    ErrorKind = "deadline"    // context.DeadlineExceeded
	KindOther       ErrorKind = "other"       // anything else
)

// kinds pairs each kind with its sentinel, in test order.
var kinds = []struct {
	kind ErrorKind
	err  error
}{
	{KindNotFound, ErrNotFound},
	{KindTooLarge, ErrTooLarge},
	{KindNoSpace, ErrNoSpace},
	{KindReadOnly, ErrReadOnly},
	{KindPermission, ErrPermission},
	{KindInvalidID, segment.ErrInvalidID},
	{KindInvalid, ErrInvalid},
	{KindStale, ErrStale},
	{KindChecksum, segment.ErrChecksum},
	{KindUnavailable, ErrUnavailable},
	{KindCanceled, context.Canceled},
	{KindDeadline, context.DeadlineExceeded},
}

// Kind classifies err (KindOK for nil).
func Kind(err error) ErrorKind {
	if err == nil {
		return KindOK
	}
	for _, k := range kinds {
		if errors.Is(err, k.err) {
			return k.kind
		}
	}
	return KindOther
}

// Sentinel is the error that kind k stands for, nil for KindOK and
// KindOther: what a client rebuilds from a wire code so that errors.Is
// works on its side too.
func (k ErrorKind) Sentinel() error {
	for _, e := range kinds {
		if e.kind == k {
			return e.err
		}
	}
	return nil
}
