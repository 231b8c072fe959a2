package fs

import (
	"context"
	"errors"
	"syscall"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// toErrno is the one place where storage errors become errnos.
//
//	backend.ErrNotFound                 ENOENT
//	backend.ErrTooLarge                 EFBIG
//	backend.ErrNoSpace                  ENOSPC
//	backend.ErrReadOnly                 EROFS
//	backend.ErrPermission               EACCES
//	backend.ErrInvalid, ErrInvalidID    EINVAL
//	backend.ErrStale                    ESTALE
//	context.Canceled                    EINTR (the caller was interrupted)
//	a syscall.Errno, wrapped            itself (the local spool: ENOSPC, EDQUOT…)
//	anything else                       EIO
//
// ErrStale becomes ESTALE rather than EIO: it means the version a handle
// pinned can no longer be served, which is what "stale file handle" says to
// a user, and it is distinguishable from a failing disk in scripts. ESTALE
// from LOOKUP makes the kernel retry the path walk once, which is harmless.
// Unavailable backends, checksum mismatches (segment.ErrChecksum) and
// deadlines are I/O errors: the bytes could not be delivered.
func toErrno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, backend.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, backend.ErrTooLarge):
		return syscall.EFBIG
	case errors.Is(err, backend.ErrNoSpace):
		return syscall.ENOSPC
	case errors.Is(err, backend.ErrReadOnly):
		return syscall.EROFS
	case errors.Is(err, backend.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, backend.ErrInvalid), errors.Is(err, segment.ErrInvalidID):
		return syscall.EINVAL
	case errors.Is(err, backend.ErrStale):
		return syscall.ESTALE
	case errors.Is(err, segment.ErrChecksum), errors.Is(err, backend.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded):
		return syscall.EIO
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		return errno
	}
	return syscall.EIO
}

// fail converts err with toErrno and logs it, once, with the operation and
// the file name (a segment id or a temp name). ENOENT is an answer, not a
// failure, and an interrupted caller is not worth a warning.
func (fsys *filesystem) fail(op, name string, err error) syscall.Errno {
	errno := toErrno(err)
	switch errno {
	case 0, syscall.ENOENT:
	case syscall.EINTR:
		fsys.log.Debug("interrupted", "op", op, "segment", name, "err", err)
	default:
		fsys.log.Warn("operation failed", "op", op, "segment", name, "errno", errno.Error(), "err", err)
	}
	return errno
}
