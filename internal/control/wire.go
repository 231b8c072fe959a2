package control

import (
	"fmt"
	"net/http"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// wireInfo is segment.Info on the socket.
type wireInfo struct {
	ID          uint64 `json:"id"`
	Size        int64  `json:"size"`
	ModTime     int64  `json:"mtime_ns"`
	Tier        uint8  `json:"tier"`
	Version     string `json:"version,omitempty"`
	Sums        []byte `json:"sums,omitempty"`
	WrittenAt   int64  `json:"written_ns,omitempty"`
	StoredSize  int64  `json:"stored_size,omitempty"`
	Compression string `json:"compression,omitempty"`
}

func toWire(i segment.Info) wireInfo {
	w := wireInfo{ID: uint64(i.ID), Size: i.Size, ModTime: i.ModTime.UnixNano(), Tier: uint8(i.Tier),
		Version: i.Version, StoredSize: i.StoredSize, Compression: i.Compression}
	if !i.WrittenAt.IsZero() {
		w.WrittenAt = i.WrittenAt.UnixNano()
	}
	if i.Sums != nil {
		w.Sums, _ = i.Sums.MarshalBinary()
	}
	return w
}

func (w wireInfo) info() segment.Info {
	i := segment.Info{ID: segment.ID(w.ID), Size: w.Size, ModTime: time.Unix(0, w.ModTime).UTC(), Tier: segment.Tier(w.Tier),
		Version: w.Version, StoredSize: w.StoredSize, Compression: w.Compression}
	if w.WrittenAt != 0 {
		i.WrittenAt = time.Unix(0, w.WrittenAt).UTC()
	}
	if len(w.Sums) > 0 {
		var s segment.Checksums
		if s.UnmarshalBinary(w.Sums) == nil {
			i.Sums = &s
		}
	}
	return i
}

// wireError carries an error's kind across the socket so the client can
// rebuild a value that errors.Is recognises.
type wireError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// statuses maps each error kind (backend.Kind) to the HTTP status of a
// reply that carries it; the wire code is the kind's name.
var statuses = map[backend.ErrorKind]int{
	backend.KindNotFound:    http.StatusNotFound,
	backend.KindUnavailable: http.StatusServiceUnavailable,
	backend.KindInvalid:     http.StatusBadRequest,
	backend.KindInvalidID:   http.StatusBadRequest,
	backend.KindTooLarge:    http.StatusRequestEntityTooLarge,
	backend.KindStale:       http.StatusPreconditionFailed,
	backend.KindPermission:  http.StatusForbidden,
	backend.KindNoSpace:     http.StatusInsufficientStorage,
	backend.KindReadOnly:    http.StatusMethodNotAllowed,
	backend.KindChecksum:    http.StatusBadGateway,
	backend.KindCanceled:    499, // the client went away
	backend.KindDeadline:    http.StatusGatewayTimeout,
}

func encodeError(err error) (int, wireError) {
	k := backend.Kind(err)
	status, ok := statuses[k]
	if !ok {
		status = http.StatusInternalServerError
	}
	return status, wireError{Kind: string(k), Message: err.Error()}
}

// remoteError is an error that came over the socket.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

func decodeError(w wireError) error {
	if sentinel := backend.ErrorKind(w.Kind).Sentinel(); sentinel != nil {
		return &remoteError{msg: w.Message, kind: sentinel}
	}
	return fmt.Errorf("%s", w.Message)
}
