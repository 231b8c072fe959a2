package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/scribefs/scribefs/segment"
)

// streamMin is the size a draft must reach, by appends, before its bytes are
// streamed into the store while it is still being written. Smaller files are
// stored in one go when they are closed.
const streamMin = 8 << 20

// errStreamAborted ends a stream whose draft was changed other than by an
// append (or closed, or renamed): the pending put is abandoned and the draft
// is published the ordinary way.
var errStreamAborted = errors.New("streamed put abandoned")

// A stream stores a draft that is being written sequentially (cp, a
// download, a ledger flushing a segment) while it is written: a Store.PutStream
// runs in the background, reading the spool up to the draft's size and
// waiting for more. Close then only has to store the last bytes and
// publish, instead of copying the whole file, so the copy overlaps the
// writing. Nothing is visible before the draft is published: finish hands
// over the final size and mtime, and PutStream returns the stored version.
//
// The spool is the source of truth throughout; a stream only reads it.
// Appends grow what the stream may read. Any other change (a write below
// the end, a truncation) aborts the stream, since it may have read those
// bytes already, and the publish falls back to Store.Put.
type stream struct {
	id    segment.ID
	spool *os.File

	mu    sync.Mutex
	cond  *sync.Cond
	avail int64     // bytes of the spool the stream may read
	off   int64     // bytes read so far
	final bool      // avail is the final size
	mtime time.Time // to publish with, once final
	err   error     // set by abort: Read fails with it

	done chan struct{} // closed when PutStream has returned
	res  error         // PutStream's result, valid after done
}

// startStream begins storing the draft's spool as segment id in the
// background, through ctx (which ends with the mount).
func startStream(ctx context.Context, store Store, id segment.ID, spool *os.File, size int64) *stream {
	st := &stream{id: id, spool: spool, avail: size, done: make(chan struct{})}
	st.cond = sync.NewCond(&st.mu)
	stop := context.AfterFunc(ctx, func() { st.abort(ctx.Err()) })
	go func() {
		defer close(st.done)
		defer stop()
		_, st.res = store.PutStream(ctx, id, st, st.modTime)
	}()
	return st
}

// Read implements io.Reader for PutStream: it returns spool bytes up to
// avail, waits for more while the draft is open, and returns EOF once the
// draft was published at its final size.
func (st *stream) Read(p []byte) (int, error) {
	st.mu.Lock()
	for st.err == nil && st.off == st.avail && !st.final {
		st.cond.Wait()
	}
	if st.err != nil {
		st.mu.Unlock()
		return 0, st.err
	}
	if st.off == st.avail {
		st.mu.Unlock()
		return 0, io.EOF
	}
	off := st.off
	if rest := st.avail - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	st.mu.Unlock()
	// Bytes below avail are rewritten only by a change that aborts the
	// stream first; what such a change raced with is discarded below.
	n, err := st.spool.ReadAt(p, off)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.err != nil {
		return 0, st.err // aborted meanwhile (a truncation may have cut the read)
	}
	if n < len(p) {
		// Never an EOF-like error: the put would take it for the end of
		// the data and publish a cut-off file.
		if err == nil || err == io.EOF {
			err = fmt.Errorf("spool: read %d of %d bytes at offset %d", n, len(p), off)
		}
		st.err = err
		return 0, err
	}
	st.off += int64(n)
	return n, nil
}

// grow makes the first size bytes readable (after an append).
func (st *stream) grow(size int64) {
	st.mu.Lock()
	if size > st.avail {
		st.avail = size
		st.cond.Signal()
	}
	st.mu.Unlock()
}

// abort makes the stream's put fail with err; it returns at once (the
// background put notices at its next Read).
func (st *stream) abort(err error) {
	if err == nil {
		err = errStreamAborted
	}
	st.mu.Lock()
	if st.err == nil && !st.final {
		st.err = err
		st.cond.Signal()
	}
	st.mu.Unlock()
}

// finish ends the stream at size bytes with mtime and waits for the put; nil
// means the draft is stored and published.
func (st *stream) finish(size int64, mtime time.Time) error {
	st.mu.Lock()
	if st.err == nil {
		st.avail, st.final, st.mtime = size, true, mtime
		st.cond.Signal()
	}
	st.mu.Unlock()
	<-st.done
	return st.res
}

func (st *stream) modTime() time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.mtime
}
