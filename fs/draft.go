package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/scribefs/scribefs/segment"
)

// errDraftClosed is returned by a draft used after it was discarded (at
// unmount); it becomes EIO.
var errDraftClosed = errors.New("staged file discarded")

// A draft is the staged next version of one file. Every handle that has a
// file open for writing shares its draft, so `cat >>` from two shells or a
// `dd conv=notrunc` next to a reader behave as on a local disk; read-only
// opens made while it has unpublished changes read it too (read-your-writes
// within the mount).
//
// The bytes live in a spool file created (and immediately unlinked) under
// Store.SpoolDir, never in memory. A draft opened on an existing segment
// starts from that segment's pinned version (base) and copies it into the
// spool only on the first change, so opening for append and closing without
// writing costs nothing. Temporary dot-files are drafts that are never
// published on their own: they are published by renaming them onto an id.
//
// Locks: segmentsDir.mu guards name, refs and ino. publishMu serialises
// publishing and is taken before mu. Store.Put runs under mu.RLock, so reads
// continue while a version is published and writes wait for it to finish:
// the published bytes are exactly the draft at one moment.
type draft struct {
	// Guarded by segmentsDir.mu.
	name string // the name the draft is bound to; "" once unlinked or replaced
	refs int    // open handles using the draft
	ino  uint64 // inode number, temp files only

	publishMu sync.Mutex

	mu       sync.RWMutex
	spoolDir string
	spool    *os.File // nil until the contents are non-empty
	base     Reader   // pinned version the draft started from, until loaded
	loaded   bool     // the contents are the spool's (base has been copied or dropped)
	size     int64
	seq      uint64    // number of changes so far
	pubSeq   uint64    // changes covered by the last successful publish
	mtime    time.Time // of the last change, or as set by utimes
	closed   bool
	fresh    bool // the draft started from nothing (a new file)
	// filled: a publish stored a non-empty version. A new file whose
	// writes then fail is removed again unless it was (see
	// segmentsDir.failedWriter).
	filled bool
	// st stores the spool while appends continue (see stream); noStream
	// is set once one was aborted, until the next publish.
	st       *stream
	noStream bool
	// writers are the handles open for writing (see othersDirty).
	writers map[*openFile]struct{}
}

func (dr *draft) addWriter(h *openFile) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.writers == nil {
		dr.writers = make(map[*openFile]struct{})
	}
	dr.writers[h] = struct{}{}
}

// onlyWriter reports whether h is the only handle writing the draft.
func (dr *draft) onlyWriter(h *openFile) bool {
	dr.mu.RLock()
	defer dr.mu.RUnlock()
	_, ok := dr.writers[h]
	return ok && len(dr.writers) == 1
}

func (dr *draft) removeWriter(h *openFile) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	delete(dr.writers, h)
}

// othersDirty reports whether a handle writing the file other than h has
// changes that are not published: its writer is not done, so h's close
// must not publish a mix of both.
func (dr *draft) othersDirty(h *openFile) bool {
	dr.mu.RLock()
	defer dr.mu.RUnlock()
	for o := range dr.writers {
		if o != h && o.wroteSeq > dr.pubSeq && o.writeErr == nil {
			return true
		}
	}
	return false
}

// newDraft starts a draft from base, the pinned current version of an
// existing segment, or from nothing when base is nil (a new file). A new file
// is dirty from the start, so that creating it and closing it publishes an
// empty segment, as `touch` expects.
func newDraft(spoolDir string, base Reader) *draft {
	dr := &draft{spoolDir: spoolDir}
	if base == nil {
		dr.loaded, dr.fresh = true, true
		dr.mtime = time.Now()
		dr.seq = 1
		return dr
	}
	info := base.Info()
	dr.base, dr.size, dr.mtime = base, info.Size, info.ModTime
	return dr
}

// dirty reports whether the draft has changes that are not published.
func (dr *draft) dirty() bool {
	dr.mu.RLock()
	defer dr.mu.RUnlock()
	return dr.seq > dr.pubSeq
}

// attr returns the size and mtime the draft presents.
func (dr *draft) attr() (size int64, mtime time.Time) {
	dr.mu.RLock()
	defer dr.mu.RUnlock()
	return dr.size, dr.mtime
}

// readAt reads the draft's current contents.
func (dr *draft) readAt(p []byte, off int64) (int, error) {
	dr.mu.RLock()
	defer dr.mu.RUnlock()
	if dr.closed {
		return 0, errDraftClosed
	}
	if off >= dr.size {
		return 0, io.EOF
	}
	if rest := dr.size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	var n int
	var err error
	switch {
	case !dr.loaded:
		n, err = dr.base.ReadAt(p, off)
	case dr.spool == nil:
		clear(p) // cannot happen: a non-empty loaded draft has a spool
		n = len(p)
	default:
		n, err = dr.spool.ReadAt(p, off)
	}
	if err == io.EOF && n == len(p) {
		err = nil
	}
	return n, err
}

// appendOffset asks writeAt to write at the end of the file, wherever the
// kernel thinks that is: O_APPEND writes land at the true end even when the
// kernel's cached size is stale, and appends from several handles never
// overwrite each other.
const appendOffset = -1

// writeAt writes p at off and returns how many bytes it wrote, the
// change's sequence number, and whether the draft is now worth streaming
// (see maybeStream). A write crossing limit is a short write, up to the
// limit, as on other file systems; one starting at or past it fails with
// EFBIG. A failed write changes nothing: it fails that write only, and the
// draft stays usable for the other writers and for later writes (after
// ENOSPC in the spool, once space is freed). A spool write that failed
// part way is a short write of what it wrote.
func (dr *draft) writeAt(p []byte, off, limit int64) (n int, seq uint64, streamable bool, err error) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.closed {
		return 0, 0, false, errDraftClosed
	}
	if off == appendOffset {
		off = dr.size
	}
	end := off + int64(len(p))
	if off < 0 || end < off {
		return 0, 0, false, syscall.EINVAL
	}
	if end > limit {
		if off >= limit {
			return 0, 0, false, fmt.Errorf("write at %d, at or over the %d-byte segment limit: %w", off, limit, syscall.EFBIG)
		}
		p, end = p[:limit-off], limit
	}
	if err := dr.loadLocked(-1); err != nil {
		return 0, 0, false, err
	}
	if err := dr.ensureSpoolLocked(); err != nil {
		return 0, 0, false, err
	}
	if off != dr.size {
		dr.dropStreamLocked() // not an append: the stream may have read these bytes
	}
	n, err = dr.spool.WriteAt(p, off)
	if n <= 0 {
		if err == nil {
			err = io.ErrShortWrite
		}
		return 0, 0, false, fmt.Errorf("spool: %w", err)
	}
	end = off + int64(n)
	dr.size = max(dr.size, end)
	dr.touchLocked()
	if dr.st != nil {
		dr.st.grow(dr.size)
	}
	return n, dr.seq, dr.st == nil && !dr.noStream && dr.size >= streamMin, nil
}

// maybeStream starts storing the draft as segment id while it is still being
// written (see stream), unless a stream runs or was aborted since the last
// publish.
func (dr *draft) maybeStream(ctx context.Context, store Store, id segment.ID) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.st != nil || dr.noStream || dr.closed || !dr.loaded || dr.spool == nil || dr.size < streamMin {
		return
	}
	dr.st = startStream(ctx, store, id, dr.spool, dr.size)
}

// dropStream abandons the stream of a draft that lost its segment name
// (unlinked, or renamed to a temp name).
func (dr *draft) dropStream() {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	dr.dropStreamLocked()
}

// dropStreamLocked abandons the stream, if any; the next publish stores the
// spool with Store.Put.
func (dr *draft) dropStreamLocked() {
	if dr.st != nil {
		dr.st.abort(nil)
		dr.st = nil
		dr.noStream = true
	}
}

// truncate sets the size; growing fills with zeros (sparsely in the spool).
// A failed truncation changes nothing.
func (dr *draft) truncate(size, limit int64) (uint64, error) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.closed {
		return 0, errDraftClosed
	}
	if size < 0 {
		return 0, syscall.EINVAL
	}
	if size > limit {
		return 0, fmt.Errorf("truncate to %d bytes, over the %d-byte segment limit: %w", size, limit, syscall.EFBIG)
	}
	if err := dr.loadLocked(size); err != nil {
		return 0, err
	}
	if size > 0 {
		if err := dr.ensureSpoolLocked(); err != nil {
			return 0, err
		}
	}
	if dr.spool != nil {
		if err := dr.spool.Truncate(size); err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
	}
	dr.dropStreamLocked()
	dr.size = size
	dr.touchLocked()
	return dr.seq, nil
}

// setMtime remembers an mtime to publish with.
func (dr *draft) setMtime(t time.Time) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	dr.mtime = t
}

func (dr *draft) touchLocked() {
	dr.seq++
	dr.mtime = time.Now()
}

// loadLocked copies the base version into the spool, or only its first
// limit bytes when limit >= 0 (a truncation makes the rest irrelevant).
func (dr *draft) loadLocked(limit int64) error {
	if dr.loaded {
		return nil
	}
	n := dr.size
	if limit >= 0 && limit < n {
		n = limit
	}
	if n > 0 {
		if err := dr.ensureSpoolLocked(); err != nil {
			return err
		}
		copied, err := io.Copy(io.NewOffsetWriter(dr.spool, 0), io.NewSectionReader(dr.base, 0, n))
		if err == nil && copied != n {
			err = fmt.Errorf("copied %d of %d bytes: %w", copied, n, io.ErrUnexpectedEOF)
		}
		if err != nil {
			// Leave the draft as it was: the spool is rewritten from
			// offset 0 on the next attempt.
			return fmt.Errorf("copy segment into spool: %w", err)
		}
	}
	dr.base.Close()
	dr.base, dr.loaded, dr.size = nil, true, n
	return nil
}

func (dr *draft) ensureSpoolLocked() error {
	if dr.spool != nil {
		return nil
	}
	f, err := createSpool(dr.spoolDir)
	if err != nil {
		return fmt.Errorf("create spool file: %w", err)
	}
	dr.spool = f
	return nil
}

// publish stores the draft as segment id. Unless force is set it does so only
// when the draft has unpublished changes.
func (dr *draft) publish(ctx context.Context, store Store, id segment.ID, force bool) error {
	dr.publishMu.Lock()
	defer dr.publishMu.Unlock()

	dr.mu.RLock()
	if dr.closed {
		dr.mu.RUnlock()
		return errDraftClosed
	}
	seq, size := dr.seq, dr.size
	if !force && seq == dr.pubSeq {
		dr.mu.RUnlock()
		return nil
	}
	// The mtime of the last change (or the one set by utimes): what stat
	// showed while the file was being written, and what it shows after.
	mtime := dr.mtime
	st := dr.st
	if st != nil {
		if st.id == id {
			if err := st.finish(dr.size, mtime); err == nil {
				dr.mu.RUnlock()
				dr.published(seq, size, st)
				return nil
			}
			// Fall back to a plain Put, which reports its own error.
		} else {
			st.abort(nil) // renamed since the stream started
		}
	}
	var r io.Reader
	switch {
	case !dr.loaded:
		r = io.NewSectionReader(dr.base, 0, dr.size)
	case dr.spool == nil:
		r = strings.NewReader("")
	default:
		r = io.NewSectionReader(dr.spool, 0, dr.size)
	}
	_, err := store.Put(ctx, id, r, dr.size, mtime)
	dr.mu.RUnlock()
	if err != nil {
		if st != nil {
			dr.mu.Lock()
			if dr.st == st {
				dr.st, dr.noStream = nil, true
			}
			dr.mu.Unlock()
		}
		return err
	}
	dr.published(seq, size, st)
	return nil
}

// published records that the changes up to seq, size bytes, are stored; st,
// the stream that was finished or abandoned by the publish, is done with.
func (dr *draft) published(seq uint64, size int64, st *stream) {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if seq > dr.pubSeq {
		dr.pubSeq = seq
	}
	dr.filled = dr.filled || size > 0
	if st != nil && dr.st == st {
		dr.st = nil
	}
	dr.noStream = false
}

// failedNew reports whether h, whose write failed, leaves a new file that
// nobody else writes and that was never stored with contents: such a file
// is not stored at all (see segmentsDir.failedWriter). createdOnly: what
// was stored is its empty creation, which goes too.
func (dr *draft) failedNew(h *openFile) (abandon, createdOnly bool) {
	dr.mu.RLock()
	defer dr.mu.RUnlock()
	if !dr.fresh || dr.filled {
		return false, false
	}
	for o := range dr.writers {
		if o != h {
			return false, false
		}
	}
	return true, dr.pubSeq > 0
}

// ensureLoaded copies the base version into the spool (renaming a segment to
// a temp name detaches the draft from the stored version).
func (dr *draft) ensureLoaded() error {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.closed {
		return errDraftClosed
	}
	return dr.loadLocked(-1)
}

// close releases the spool and the pinned base. Idempotent.
func (dr *draft) close() {
	dr.publishMu.Lock() // wait for a publish in progress
	defer dr.publishMu.Unlock()
	dr.mu.Lock()
	defer dr.mu.Unlock()
	if dr.closed {
		return
	}
	dr.closed = true
	dr.dropStreamLocked()
	if dr.spool != nil {
		dr.spool.Close()
		dr.spool = nil
	}
	if dr.base != nil {
		dr.base.Close()
		dr.base = nil
	}
}
