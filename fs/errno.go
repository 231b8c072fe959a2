package fs

import (
	"errors"
	"syscall"

	"github.com/scribefs/scribefs/backend"
)

// errnos maps each error kind (backend.Kind, the one classification of
// errors) to the errno the mount answers with:
//
//	not_found                     ENOENT
//	too_large                     EFBIG
//	no_space                      ENOSPC
//	read_only                     EROFS
//	permission                    EACCES
//	invalid, invalid_id           EINVAL
//	stale                         ESTALE
//	canceled                      EINTR (the caller was interrupted)
//	checksum, unavailable,        EIO
//	deadline
//	other: a syscall.Errno        itself (the local spool: ENOSPC, EDQUOT…)
//	other                         EIO
//
// ErrStale becomes ESTALE rather than EIO: it means the version a handle
// pinned can no longer be served, which is what "stale file handle" says to
// a user, and it is distinguishable from a failing disk in scripts. ESTALE
// from LOOKUP makes the kernel retry the path walk once, which is harmless.
// Unavailable backends, checksum mismatches and deadlines are I/O errors:
// the bytes could not be delivered.
var errnos = map[backend.ErrorKind]syscall.Errno{
	backend.KindOK:          0,
	backend.KindNotFound:    syscall.ENOENT,
	backend.KindTooLarge:    syscall.EFBIG,
	backend.KindNoSpace:     syscall.ENOSPC,
	backend.KindReadOnly:    syscall.EROFS,
	backend.KindPermission:  syscall.EACCES,
	backend.KindInvalid:     syscall.EINVAL,
	backend.KindInvalidID:   syscall.EINVAL,
	backend.KindStale:       syscall.ESTALE,
	backend.KindChecksum:    syscall.EIO,
	backend.KindUnavailable: syscall.EIO,
	backend.KindDeadline:    syscall.EIO,
	backend.KindCanceled:    syscall.EINTR,
}

// toErrno is the one place where storage errors become errnos (errnos).
func toErrno(err error) syscall.Errno {
	if errno, ok := errnos[backend.Kind(err)]; ok {
		return errno
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
