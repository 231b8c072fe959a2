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
	// The kernel keeps one size and one page cache per inode, shared by
	// all handles, so a node serves one version at a time (see Open).
	// cacheKey is the version whose pages it may hold ("" for none known),
	// cacheInfo that version, and cacheUsers the pinned readers of it.
	cacheKey   string
	cacheInfo  segment.Info
	cacheUsers int
	// retired: the name moved on to another version while cacheUsers
	// still read this node's. The node then only serves them, showing
	// cacheInfo, and the name gets a new node (a new kernel inode) at its
	// next lookup; see retireLocked.
	retired bool
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

// sameContent reports whether two descriptions of a segment are the same
// bytes (the mtime may differ: utimes changes no byte).
func sameContent(a, b segment.Info) bool {
	if a.Size != b.Size || a.Version != b.Version || (a.Sums == nil) != (b.Sums == nil) {
		return false
	}
	if a.Sums != nil && a.Sums.Whole != b.Sums.Whole {
		return false
	}
	if a.Version == "" && a.Sums == nil {
		return a.ModTime.Equal(b.ModTime) // nothing better to go by
	}
	return true
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
// file open for writing, shares the file's draft instead (read-your-writes).
//
// The kernel has one size and one page cache per inode, so a node (a kernel
// inode) serves one version at a time: pinned readers read through its
// page cache, keeping what is cached (FOPEN_KEEP_CACHE) when their version
// is the one cached, so that a second cat is served from memory. When the
// file changes while such readers are open (an open for writing, a new
// version seen by lookup, getattr or a later open, a truncation), the node
// is retired: it goes on serving its readers their version to its end,
// with its size, and the name gets a new node; the operation that found
// the node retired answers ESTALE, on which the kernel looks the name up
// again and retries once. So mappings and the page cache of one inode only
// ever hold one version. Handles on a draft bypass the page cache for
// read and write (a write invalidates the cached range); shared mappings
// of them see the draft (CAP_DIRECT_IO_ALLOW_MMAP).
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
		if errno := d.retireForChange(n); errno != 0 {
			return nil, 0, errno
		}
		return n.openWrite(ctx, flags)
	}

	d.mu.Lock()
	name, unlinked := n.name, n.unlinked
	d.mu.Unlock()
	if unlinked {
		// A stale entry: the name went away from this node (removed,
		// replaced, or retired). Whatever it names now is another file,
		// which must not be read through this inode.
		return nil, 0, syscall.ESTALE
	}
	kind, id := classify(name)
	if dr := d.attachDraft(name); dr != nil {
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
	h := &openFile{node: n, reader: r, cached: true}
	// Read-only handles have nothing to flush on close.
	fuseFlags := uint32(fuse.FOPEN_NOFLUSH)
	info := r.Info()
	key := versionKey(info)
	d.mu.Lock()
	if n.retired || n.cacheUsers > 0 && !sameContent(info, n.cacheInfo) {
		// Others read another version through this inode: this reader
		// gets a node of its own.
		d.retireLocked(n)
		d.mu.Unlock()
		r.Close()
		go d.NotifyEntry(name)
		return nil, 0, syscall.ESTALE
	}
	// Without KEEP_CACHE the kernel drops the cached pages.
	if key != "" && key == n.cacheKey {
		fuseFlags |= fuse.FOPEN_KEEP_CACHE
	}
	n.cacheKey, n.cacheInfo = key, info
	n.cacheUsers++
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
		h.wroteLocked(seq, callerProcess(ctx)) // not shared yet
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
	nw, seq, streamable, err := h.draft.writeAt(data, off, n.dir.fsys.store.MaxSegmentBytes())
	if err != nil {
		return 0, n.dir.writeFailed(ctx, h, "write", err)
	}
	h.wrote(seq, h.process(ctx))
	if streamable && !n.dir.fsys.discard.Load() {
		d := n.dir
		d.mu.Lock()
		name := h.draft.name
		d.mu.Unlock()
		if kind, id := classify(name); kind == segmentName {
			h.draft.maybeStream(d.fsys.ctx, d.fsys.store, id)
			// An unlink or rename racing this write may have detached
			// the draft after the look at its name, and its abandoning
			// of the stream may have run before the stream started.
			d.mu.Lock()
			moved := h.draft.name != name
			d.mu.Unlock()
			if moved {
				h.draft.dropStream()
			}
		}
	}
	return uint32(nw), 0
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
