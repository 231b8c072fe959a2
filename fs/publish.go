package fs

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// Publishing drafts, and the attribute changes that go through them.

// published is called after a node's draft was stored: the kernel's cached
// attributes (mtime) are refreshed. (The page cache needs nothing: the new
// version has a new key, so the next open drops what is cached.)
func (d *segmentsDir) published(n *fileNode, name string) {
	d.noteChange(name)
	// Offset -1 invalidates the attributes only: writes bypassed the page
	// cache. Asynchronously, because the kernel handles the notification
	// under locks that a request in flight on this inode may hold.
	go n.NotifyContent(-1, 0)
}

// flush publishes the changes handle h made. It runs for close(2) (FLUSH)
// and RELEASE; the result of the Put is what close returns. Every change is
// published by the close that follows it, including a file only created or
// emptied (touch, : > f, O_TRUNC): once close returns 0 the change is in
// the store. RELEASE publishes what FLUSH left (writes through a shared
// mapping after close) but does not retry a publish whose failure close
// already reported.
func (d *segmentsDir) flush(ctx context.Context, h *openFile, op string) syscall.Errno {
	if !h.dirty() {
		return 0
	}
	if op == "release" && !h.retryable() {
		return 0 // close already reported the failure; the old version stays
	}
	if err := h.failure(); err != nil {
		// A write through this handle failed: its writer was told, and
		// its close says so again and publishes nothing.
		h.publishFailed()
		return toErrno(err)
	}
	if op == "flush" && !h.changedBy(callerProcess(ctx)) {
		// The close of a descriptor that a process which changed nothing
		// through this handle inherited or was passed (a child of the
		// writer exiting): the writer is not done.
		return 0
	}
	if h.draft.othersDirty(h) {
		// Another handle's writer is not done: its close publishes
		// both, and publishing now would store a mix no writer wrote.
		return 0
	}
	errno := d.publishDraft(ctx, h.draft, h.node, op)
	if errno != 0 {
		h.publishFailed()
	}
	return errno
}

// sync publishes every pending change of the file behind node n, whichever
// handle made it: fsync of any descriptor of a file, even one opened
// read-only (sync FILE), makes what was written through the others durable,
// as POSIX readers expect. h is the handle fsync was called on, if any.
func (d *segmentsDir) sync(ctx context.Context, n *fileNode, h *openFile) syscall.Errno {
	var dr *draft
	if h != nil {
		dr = h.draft
	}
	if dr == nil {
		// A pinned reader, or no handle: the file's changes are in the
		// draft bound to the node's name, if there is one.
		d.mu.Lock()
		name, unlinked, retired := n.name, n.unlinked, n.retired
		d.mu.Unlock()
		if unlinked && !retired {
			return 0 // what the name holds now is another file
		}
		// (A retired node's readers read an older version of the file
		// that the name still holds: its pending changes are synced.)
		if dr = d.attachDraft(name); dr == nil {
			return 0
		}
		defer d.releaseDraft(dr)
	}
	if !dr.dirty() {
		return 0
	}
	return d.publishDraft(ctx, dr, n, "fsync")
}

// publishDraft stores draft dr under the segment name it is bound to, if it
// has unpublished changes; n is a node of the file, whose cached attributes
// are then refreshed. A draft bound to a temp name, or to none (unlinked),
// is not stored.
func (d *segmentsDir) publishDraft(ctx context.Context, dr *draft, n *fileNode, op string) syscall.Errno {
	if d.fsys.discard.Load() {
		return syscall.EIO // unmounting: writes still open after the grace period are dropped
	}
	// The caller's close must not be undone by a signal arriving during
	// the Put (Go programs get SIGURG all the time).
	ctx = context.WithoutCancel(ctx)
	for {
		d.mu.Lock()
		name := dr.name
		d.mu.Unlock()
		kind, id := classify(name)
		if kind != segmentName {
			return 0 // a temp file, or unlinked: nothing to store
		}
		unlock := d.lockNames(name)
		d.mu.Lock()
		moved := dr.name != name
		d.mu.Unlock()
		if moved {
			unlock()
			continue
		}
		err := dr.publish(ctx, d.fsys.store, id, false)
		unlock()
		if err == nil {
			d.published(n, name)
			return 0
		}
		return d.fsys.fail(op, name, err)
	}
}

// writeFailed records that a change through handle h failed with err, and
// returns the errno for it. The failure is that write's only: the draft is
// unchanged and its other writers go on. But if h is the draft's only
// writer, the draft is detached from the name, so that later opens start
// from the stored version rather than from bytes a failed writer left (a
// write crossing the size limit is a short write first): a new file is
// removed again (as if its creation had failed; see dropCreated), an
// existing segment keeps its stored version. The handle's close reports
// the error and publishes nothing.
func (d *segmentsDir) writeFailed(ctx context.Context, h *openFile, op string, err error) syscall.Errno {
	h.failed(err)
	dr := h.draft
	d.mu.Lock()
	name := dr.name
	d.mu.Unlock()
	errno := d.fsys.fail(op, name, err)
	kind, id := classify(name)
	if kind != segmentName {
		return errno
	}
	unlock := d.lockNames(name)
	d.mu.Lock()
	bound := dr.name == name
	d.mu.Unlock()
	alone, createdOnly := false, false
	if bound {
		alone = dr.onlyWriter(h)
		_, createdOnly = dr.failedNew(h)
	}
	if !alone {
		unlock()
		return errno
	}
	isNew, _ := dr.failedNew(h)
	d.noteChange(name)
	if isNew {
		d.abandonLocked(dr, name)
		if createdOnly {
			d.dropCreated(context.WithoutCancel(ctx), id)
		}
	} else {
		d.mu.Lock()
		d.unbindLocked(dr)
		d.mu.Unlock()
	}
	unlock()
	if isNew {
		// The kernel has a positive entry for the name; a stat right
		// after the failure must not find the file. Asynchronously: the
		// kernel takes the directory's lock, and a request of the
		// writer may hold it.
		go d.NotifyEntry(name)
	}
	return errno
}

// dropCreated removes the empty segment that the close of a duplicate
// descriptor stored for a new file whose writes then failed (a shell's
// `cmd > new` closes one right after opening): such a file is not stored
// at all, as if its creation had failed. Only an empty segment is removed.
// The caller holds the name lock.
func (d *segmentsDir) dropCreated(ctx context.Context, id segment.ID) {
	info, err := d.fsys.store.Stat(ctx, id)
	if err != nil || info.Size != 0 {
		return
	}
	if err := d.fsys.store.Delete(ctx, id); err != nil && !errors.Is(err, backend.ErrNotFound) {
		d.fsys.fail("unlink", id.String(), err)
	}
}

// abandonLocked gives up a new file whose writes failed (EFBIG, ENOSPC…):
// it was never stored, and now it disappears from the directory too. The
// caller holds the name lock.
func (d *segmentsDir) abandonLocked(dr *draft, name string) {
	d.mu.Lock()
	d.unbindLocked(dr)
	d.mu.Unlock()
	d.markUnlinked(name)
}

// attrOf fills out the attributes of node n; h is an open handle of n, if
// the kernel (or go-fuse) named one.
func (d *segmentsDir) attrOf(ctx context.Context, n *fileNode, h *openFile, out *fuse.Attr) syscall.Errno {
	d.mu.Lock()
	name, unlinked := n.name, n.unlinked
	dr := d.draftLocked(name)
	if n.retired {
		info := n.cacheInfo
		d.mu.Unlock()
		d.fsys.fileAttr(out, info.Size, info.ModTime, 1)
		return 0
	}
	d.mu.Unlock()
	if !unlinked {
		if dr != nil {
			size, mtime := dr.attr()
			d.fsys.fileAttr(out, size, mtime, 1)
			return 0
		}
		if kind, id := classify(name); kind == segmentName {
			info, err := d.fsys.store.Stat(ctx, id)
			if err == nil {
				d.mu.Lock()
				if n.cacheUsers > 0 && !n.retired && n.name == name && !sameContent(info, n.cacheInfo) {
					// A new version (from elsewhere): this inode stays
					// with the readers of the old one, and shows its
					// size; the name gets a new node.
					d.retireLocked(n)
					info = n.cacheInfo
					go d.NotifyEntry(name)
				}
				d.mu.Unlock()
				d.fsys.fileAttr(out, info.Size, info.ModTime, 1)
				return 0
			}
			if h == nil || !errors.Is(err, backend.ErrNotFound) {
				return d.vanished(d.fsys.fail("getattr", name, err))
			}
		}
	}
	if h == nil {
		if unlinked {
			return syscall.ENOENT
		}
		return syscall.ESTALE
	}
	// Unlinked but open (fstat after unlink): what the handle sees.
	size, mtime := h.attr()
	d.fsys.fileAttr(out, size, mtime, 0)
	return 0
}

// vanished turns ENOENT for a file the kernel still knows by name into
// ESTALE. The file went away behind the kernel's back (deleted from the
// store by someone else, or a new file that was never stored), and the
// kernel's cached entry is stale: on ESTALE the kernel looks the path up
// again and retries, so open(O_CREAT) then creates the file instead of
// failing, and stat reports ENOENT.
func (d *segmentsDir) vanished(errno syscall.Errno) syscall.Errno {
	if errno == syscall.ENOENT {
		return syscall.ESTALE
	}
	return errno
}

// truncate sets the size of the file behind node n. Through a handle open for
// writing it is staged like a write (O_TRUNC, ftruncate); by path
// (truncate(2)) it takes effect at once.
func (d *segmentsDir) truncate(ctx context.Context, n *fileNode, h *openFile, size uint64) syscall.Errno {
	limit := d.fsys.store.MaxSegmentBytes()
	if size > uint64(limit) {
		return syscall.EFBIG
	}
	if h != nil && h.write {
		seq, err := h.draft.truncate(int64(size), limit)
		if err != nil {
			return d.writeFailed(ctx, h, "truncate", err)
		}
		h.wrote(seq, callerProcess(ctx))
		return 0
	}
	if errno := d.retireForChange(n); errno != 0 {
		return errno
	}
	name, unlock, errno := d.lockBinding(n)
	if errno != 0 {
		return errno
	}
	defer unlock()
	kind, id := classify(name)
	dr := d.attachDraft(name)
	release := func() { d.releaseDraft(dr) }
	if dr == nil {
		if kind != segmentName {
			return syscall.ENOENT
		}
		r, err := d.fsys.store.Open(ctx, id)
		if err != nil {
			return d.vanished(d.fsys.fail("truncate", name, err))
		}
		dr = newDraft(d.fsys.store.SpoolDir(), r)
		release = dr.close
	}
	defer release()
	if _, err := dr.truncate(int64(size), limit); err != nil {
		return d.fsys.fail("truncate", name, err)
	}
	if kind == segmentName {
		if err := dr.publish(context.WithoutCancel(ctx), d.fsys.store, id, false); err != nil {
			return d.fsys.fail("truncate", name, err)
		}
		d.published(n, name)
	}
	return 0
}

// setMtime applies utimes. A file with unpublished changes remembers the
// mtime and publishes with it (cp -p, rsync and tar set it before close);
// otherwise it is stored at once with Store.SetModTime.
func (d *segmentsDir) setMtime(ctx context.Context, n *fileNode, h *openFile, mtime time.Time) syscall.Errno {
	var dr *draft
	if h != nil && h.draft != nil {
		dr = h.draft
	} else {
		d.mu.Lock()
		name, unlinked, retired := n.name, n.unlinked, n.retired
		d.mu.Unlock()
		if retired {
			return syscall.ESTALE // the name has a new node
		}
		if unlinked {
			return syscall.ENOENT
		}
		if dr = d.attachDraft(name); dr != nil {
			defer d.releaseDraft(dr)
		} else {
			if kind, _ := classify(name); kind != segmentName {
				return syscall.ENOENT
			}
		}
	}
	name := d.nameOf(n)
	if dr != nil {
		// Holding publishMu: a publish in progress would not see the
		// new mtime, so wait for it and then decide.
		dr.publishMu.Lock()
		d.mu.Lock()
		name = dr.name
		d.mu.Unlock()
		kind, _ := classify(name)
		if kind != segmentName || dr.dirty() {
			dr.setMtime(mtime)
			dr.publishMu.Unlock()
			return 0
		}
		dr.publishMu.Unlock()
	}
	_, id := classify(name)
	if err := d.fsys.store.SetModTime(context.WithoutCancel(ctx), id, mtime); err != nil {
		return d.vanished(d.fsys.fail("setmtime", name, err))
	}
	d.noteChange(name)
	if dr != nil {
		dr.setMtime(mtime)
	}
	return 0
}
