package fs

import (
	"context"
	"io"
	"strconv"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/scribefs/scribefs/segment"
)

// fileNode is a regular file in the segments directory: a segment, or a
// temporary dot-file. A node is bound to a name, not to a version: what it
// shows is looked up by that name each time (the draft if the file is being
// written, else Store.Stat), and each open pins what it reads.
type fileNode struct {
	gofs.Inode
	dir *segmentsDir

	// Guarded by dir.mu.
	name      string     // bound name; follows renames
	unlinked  bool       // the name was removed or replaced: only open handles remain
	keyed     bool       // created with the natural identity of segment origin
	origin    segment.ID // the segment the node's inode number was computed from
	counted   bool       // counted in dir.displaced
	forgotten bool       // the kernel forgot the node
	// The kernel keeps one page cache per inode, shared by all handles.
	// cacheKey is the version whose pages it may hold ("" for none known)
	// and cacheUsers the handles reading through it.
	cacheKey   string
	cacheUsers int
}

// versionKey identifies a stored version's bytes for page-cache purposes;
// "" when the store cannot tell versions apart, and the cache is then never
// kept.
func versionKey(info segment.Info) string {
	if info.Version == "" && info.Sums == nil {
		return ""
	}
	key := info.Version + "/" + strconv.FormatInt(info.Size, 10) + "/" + strconv.FormatInt(info.ModTime.UnixNano(), 10)
	if info.Sums != nil {
		key += "/" + strconv.FormatUint(uint64(info.Sums.Whole), 16)
	}
	return key
}

// attr returns what an open handle sees.
func (h *openFile) attr() (size int64, mtime time.Time) {
	if h.draft != nil {
		return h.draft.attr()
	}
	info := h.reader.Info()
	return info.Size, info.ModTime
}

var _ = (gofs.NodeGetattrer)((*fileNode)(nil))

func (n *fileNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	h, _ := f.(*openFile)
	return n.dir.attrOf(ctx, n, h, &out.Attr)
}

var _ = (gofs.NodeSetattrer)((*fileNode)(nil))

// Setattr handles truncate (staged through a handle open for writing,
// immediate by path), utimes (remembered by a dirty file, else
// Store.SetModTime) and chmod/chown, which are accepted and ignored so that
// rsync -a, tar -x and cp -p work. Atime is not kept.
func (n *fileNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.dir.fsys.readOnly {
		return syscall.EROFS
	}
	h, _ := f.(*openFile)
	if size, ok := in.GetSize(); ok {
		if errno := n.dir.truncate(ctx, n, h, size); errno != 0 {
			return errno
		}
	}
	if mtime, ok := in.GetMTime(); ok {
		if errno := n.dir.setMtime(ctx, n, h, mtime); errno != 0 {
			return errno
		}
	}
	return n.dir.attrOf(ctx, n, h, &out.Attr)
}

var _ = (gofs.NodeStatfser)((*fileNode)(nil))

func (n *fileNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return n.dir.fsys.statfs(out)
}

var _ = (gofs.NodeOnForgetter)((*fileNode)(nil))

func (n *fileNode) OnForget() { n.dir.forget(n) }

var _ = (gofs.NodeOpener)((*fileNode)(nil))

// Open pins what the handle will read. A read-only open of a segment pins its
// current version (Store.Open) and reads it until release, whatever happens
// to the segment meanwhile. An open for writing, or a read-only open of a
// file with unpublished changes, shares the file's draft instead.
//
// The kernel has one page cache per inode, so it may only ever hold one
// version. A pinned reader uses it, keeping what is cached
// (FOPEN_KEEP_CACHE) when its version is the one cached, so that a second
// cat is served from memory, and dropping it otherwise; but while readers of
// another version still use it, a reader of a newer version bypasses it
// (FOPEN_DIRECT_IO) rather than read their pages. Handles on a draft always
// bypass it: a write invalidates the cached range instead of filling it with
// unpublished bytes. Shared mmap still works (CAP_DIRECT_IO_ALLOW_MMAP).
func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	d := n.dir
	fsys := d.fsys
	if fsys.closing.Load() {
		return nil, 0, syscall.ESHUTDOWN
	}
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
	if write && fsys.readOnly {
		return nil, 0, syscall.EROFS
	}
	if write {
		return n.openWrite(ctx, flags)
	}

	name := d.nameOf(n)
	kind, id := classify(name)
	if dr := d.attachDraft(name); dr != nil && kind == segmentName && !dr.dirty() {
		// Everything in the draft is stored (its writers flushed, or
		// have not written yet): pin the stored version like any reader.
		d.releaseDraft(dr)
	} else if dr != nil {
		h := &openFile{node: n, draft: dr}
		fsys.addHandle(h)
		return h, fuse.FOPEN_NOFLUSH | fuse.FOPEN_DIRECT_IO, 0
	}
	if kind != segmentName {
		return nil, 0, syscall.ESTALE
	}
	r, err := fsys.store.Open(ctx, id)
	if err != nil {
		return nil, 0, d.vanished(fsys.fail("open", name, err))
	}
	h := &openFile{node: n, reader: r}
	// Read-only handles have nothing to flush on close.
	fuseFlags := uint32(fuse.FOPEN_NOFLUSH)
	key := versionKey(r.Info())
	d.mu.Lock()
	switch {
	case n.cacheUsers > 0 && key != "" && key == n.cacheKey:
		fuseFlags |= fuse.FOPEN_KEEP_CACHE
		h.cached = true
	case n.cacheUsers > 0:
		fuseFlags |= fuse.FOPEN_DIRECT_IO // others read another version through the cache
	default:
		// Without KEEP_CACHE the kernel drops the cached pages.
		if key != "" && key == n.cacheKey {
			fuseFlags |= fuse.FOPEN_KEEP_CACHE
		}
		n.cacheKey = key
		h.cached = true
	}
	if h.cached {
		n.cacheUsers++
	}
	d.mu.Unlock()
	fsys.addHandle(h)
	return h, fuseFlags, 0
}

func (n *fileNode) openWrite(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	d := n.dir
	name, unlock, errno := d.lockBinding(n)
	if errno != 0 {
		return nil, 0, errno
	}
	defer unlock()
	var dr *draft
	switch kind, id := classify(name); kind {
	case segmentName:
		var err error
		if dr, _, err = d.openSegmentDraft(ctx, id, false, false); err != nil {
			return nil, 0, d.vanished(d.fsys.fail("open", name, err))
		}
	case tempName:
		if dr = d.attachDraft(name); dr == nil {
			return nil, 0, syscall.ESTALE
		}
	default:
		return nil, 0, syscall.ENOENT
	}
	h := &openFile{node: n, draft: dr, write: true, append: flags&syscall.O_APPEND != 0}
	if flags&syscall.O_TRUNC != 0 {
		// Staged like any write: published on close, never before.
		seq, err := dr.truncate(0, d.fsys.store.MaxSegmentBytes())
		if err != nil {
			d.releaseDraft(dr)
			return nil, 0, d.fsys.fail("open", name, err)
		}
		h.wroteSeq = seq
	}
	d.fsys.addHandle(h)
	return h, fuse.FOPEN_DIRECT_IO, 0
}

var _ = (gofs.NodeReader)((*fileNode)(nil))

func (n *fileNode) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h, ok := f.(*openFile)
	if !ok {
		return nil, syscall.EBADF
	}
	var nr int
	var err error
	if h.reader != nil {
		nr, err = h.reader.ReadAt(dest, off)
	} else {
		nr, err = h.draft.readAt(dest, off)
	}
	if err != nil && err != io.EOF {
		return nil, n.dir.fsys.fail("read", n.dir.nameOf(n), err)
	}
	return fuse.ReadResultData(dest[:nr]), 0
}

var _ = (gofs.NodeWriter)((*fileNode)(nil))

func (n *fileNode) Write(ctx context.Context, f gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	h, ok := f.(*openFile)
	if !ok || !h.write {
		return 0, syscall.EBADF
	}
	if h.append {
		off = appendOffset
	}
	seq, streamable, err := h.draft.writeAt(data, off, n.dir.fsys.store.MaxSegmentBytes())
	if err != nil {
		h.failed()
		return 0, n.dir.fsys.fail("write", n.dir.nameOf(n), err)
	}
	h.wrote(seq)
	if streamable && !n.dir.fsys.discard.Load() {
		d := n.dir
		d.mu.Lock()
		name := h.draft.name
		d.mu.Unlock()
		if kind, id := classify(name); kind == segmentName {
			h.draft.maybeStream(d.fsys.ctx, d.fsys.store, id)
		}
	}
	return uint32(len(data)), 0
}

var _ = (gofs.NodeAllocater)((*fileNode)(nil))

// Allocate supports plain preallocation (growing the file, as
// posix_fallocate does) and FALLOC_FL_KEEP_SIZE (a no-op: the spool is
// sparse). Punching holes and the like are not supported.
func (n *fileNode) Allocate(ctx context.Context, f gofs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	const keepSize = 0x1
	h, ok := f.(*openFile)
	if !ok || !h.write {
		return syscall.EBADF
	}
	switch mode {
	case keepSize:
		return 0
	case 0:
	default:
		return syscall.EOPNOTSUPP
	}
	end := off + size
	if end < off || end > uint64(n.dir.fsys.store.MaxSegmentBytes()) {
		return syscall.EFBIG
	}
	if cur, _ := h.draft.attr(); int64(end) <= cur {
		return 0
	}
	return n.dir.truncate(ctx, n, h, end)
}

var _ = (gofs.NodeFlusher)((*fileNode)(nil))

// Flush runs for every close(2) of a descriptor of the handle. If the handle
// changed the file (even if it only created or emptied it), the draft is
// published here, synchronously, so that close returns success only once
// Store.Put did.
func (n *fileNode) Flush(ctx context.Context, f gofs.FileHandle) syscall.Errno {
	h, ok := f.(*openFile)
	if !ok || !h.write {
		return 0
	}
	return n.dir.flush(ctx, h, "flush")
}

var _ = (gofs.NodeFsyncer)((*fileNode)(nil))

// Fsync publishes the file's pending changes, whichever descriptor made
// them: fsync of one descriptor (or sync FILE, which opens the file
// read-only) covers writes made through another.
func (n *fileNode) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	h, _ := f.(*openFile)
	if n.dir.fsys.readOnly {
		return 0
	}
	return n.dir.sync(ctx, n, h)
}

var _ = (gofs.NodeReleaser)((*fileNode)(nil))

// Release drops the handle. Changes made after the last flush (writes through
// a shared mmap reach us after close) are published here; the kernel does
// not report the result anywhere, so failures are only logged.
func (n *fileNode) Release(ctx context.Context, f gofs.FileHandle) syscall.Errno {
	h, ok := f.(*openFile)
	if !ok {
		return 0
	}
	if h.write && n.dir.fsys.hasHandle(h) {
		n.dir.flush(ctx, h, "release")
	}
	if !n.dir.fsys.removeHandle(h) {
		return 0 // closed at unmount already
	}
	if h.cached {
		n.dir.mu.Lock()
		n.cacheUsers--
		n.dir.mu.Unlock()
	}
	if h.reader != nil {
		h.reader.Close()
	}
	if h.draft != nil {
		n.dir.releaseDraft(h.draft)
	}
	return 0
}
