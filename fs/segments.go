package fs

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// renameNoReplace is RENAME_NOREPLACE of renameat2(2) (mv -n, link-free
// atomic creation).
const renameNoReplace = 0x1

// nameKind says what a name in the segments directory stands for.
type nameKind int

const (
	badName     nameKind = iota // anything else: refused with EINVAL on creation
	segmentName                 // canonical decimal id: a stored segment
	tempName                    // starts with ".": a temporary file, never stored by itself
)

// classify tells what a name means. Only the canonical decimal form names a
// segment, so that each segment has exactly one name ("007" and "7" are not
// both valid).
func classify(name string) (nameKind, segment.ID) {
	if strings.HasPrefix(name, ".") {
		if name == "." || name == ".." {
			return badName, 0
		}
		return tempName, 0
	}
	id, err := segment.ParseID(name)
	if err != nil {
		return badName, 0
	}
	return segmentName, id
}

// segmentsDir is the directory holding one file per segment, and the
// namespace state of the mount: files being written, temporary files, and
// the bookkeeping that keeps inode identities right across renames.
//
// Locks, in order: a name lock (lockNames) serialises everything that
// changes what a name refers to (create, unlink, rename, publish, truncate by
// path), so that for example a publish can never resurrect a segment that an
// unlink just removed; then d.mu, held briefly, guards the maps below and the
// binding fields of every fileNode and draft; then a draft's own locks.
// Store calls are made under name locks but never under d.mu.
type segmentsDir struct {
	gofs.Inode
	fsys *filesystem
	st   dirState

	nameLocks [64]sync.Mutex

	mu     sync.Mutex
	drafts map[segment.ID]*draft // segments with a draft (open for writing)
	temps  map[string]*draft     // temporary files, open or not
	// displaced counts, per segment id, the nodes that were created for
	// that id but have since been renamed away or unlinked while the
	// kernel still references them. While there are any, new nodes for the
	// id get a fresh generation, so that go-fuse, which recognises nodes by
	// (Ino, Gen), does not hand the old node out for the id again.
	displaced map[segment.ID]*displacement
	lastGen   uint64
	tempCount uint64 // temp files created so far
}

type displacement struct {
	gen  uint64 // generation for new nodes of the id
	live int    // displaced nodes the kernel still references
}

func newSegmentsDir(fsys *filesystem) *segmentsDir {
	return &segmentsDir{
		fsys:      fsys,
		st:        dirState{mode: dirMode, mtime: time.Now()},
		drafts:    make(map[segment.ID]*draft),
		temps:     make(map[string]*draft),
		displaced: make(map[segment.ID]*displacement),
	}
}

// lockNames takes the name locks of the given names, in a fixed order.
func (d *segmentsDir) lockNames(names ...string) (unlock func()) {
	idx := make([]int, 0, len(names))
	for _, name := range names {
		h := fnv.New32a()
		h.Write([]byte(name))
		idx = append(idx, int(h.Sum32()%uint32(len(d.nameLocks))))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		d.nameLocks[i].Lock()
	}
	return func() {
		for _, i := range idx {
			d.nameLocks[i].Unlock()
		}
	}
}

// refuse is the answer to creating anything but regular files.
func (d *segmentsDir) refuse() syscall.Errno {
	if d.fsys.readOnly {
		return syscall.EROFS
	}
	return syscall.EPERM
}

// draftLocked returns the draft bound to name, if any. d.mu must be held.
func (d *segmentsDir) draftLocked(name string) *draft {
	switch kind, id := classify(name); kind {
	case segmentName:
		return d.drafts[id]
	case tempName:
		return d.temps[name]
	}
	return nil
}

// draftOf returns the draft bound to name without taking a reference.
func (d *segmentsDir) draftOf(name string) *draft {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.draftLocked(name)
}

// attachDraft returns the draft bound to name with a reference taken, or nil.
func (d *segmentsDir) attachDraft(name string) *draft {
	d.mu.Lock()
	defer d.mu.Unlock()
	dr := d.draftLocked(name)
	if dr != nil {
		dr.refs++
	}
	return dr
}

// releaseDraft drops a reference. A segment's draft goes away with its last
// handle (its changes were published on flush); a temp file's stays until
// it is renamed or unlinked.
func (d *segmentsDir) releaseDraft(dr *draft) {
	d.mu.Lock()
	dr.refs--
	drop := dr.refs == 0
	switch kind, id := classify(dr.name); kind {
	case tempName:
		drop = false
	case segmentName:
		if drop && d.drafts[id] == dr {
			delete(d.drafts, id)
		}
	}
	d.mu.Unlock()
	if drop {
		dr.close()
	}
}

// unbindLocked detaches a draft from its name: handles keep using it, but it
// is no longer the file's contents (the file was unlinked or replaced).
// Reports whether the draft is unused and should be closed.
func (d *segmentsDir) unbindLocked(dr *draft) (idle bool) {
	switch kind, id := classify(dr.name); kind {
	case segmentName:
		if d.drafts[id] == dr {
			delete(d.drafts, id)
		}
	case tempName:
		if d.temps[dr.name] == dr {
			delete(d.temps, dr.name)
		}
	}
	dr.name = ""
	return dr.refs == 0
}

// openSegmentDraft returns the draft of segment id with a reference taken,
// starting one from the stored version if there is none. create allows
// starting from nothing when the segment does not exist; excl fails with
// EEXIST when it does. The caller holds the name lock.
func (d *segmentsDir) openSegmentDraft(ctx context.Context, id segment.ID, create, excl bool) (dr *draft, created bool, err error) {
	d.mu.Lock()
	if dr := d.drafts[id]; dr != nil {
		if excl {
			d.mu.Unlock()
			return nil, false, syscall.EEXIST
		}
		dr.refs++
		d.mu.Unlock()
		return dr, false, nil
	}
	d.mu.Unlock()

	r, err := d.fsys.store.Open(ctx, id)
	switch {
	case err == nil && excl:
		r.Close()
		return nil, false, syscall.EEXIST
	case err == nil:
		dr = newDraft(d.fsys.store.SpoolDir(), r)
	case create && errors.Is(err, backend.ErrNotFound):
		dr, created = newDraft(d.fsys.store.SpoolDir(), nil), true
	default:
		return nil, false, err
	}
	d.mu.Lock()
	dr.name, dr.refs = id.String(), 1
	d.drafts[id] = dr
	d.mu.Unlock()
	return dr, created, nil
}

// newTempLocked creates the draft of a new temporary file. d.mu must be held.
func (d *segmentsDir) newTempLocked(name string, dr *draft) {
	if dr == nil {
		dr = newDraft(d.fsys.store.SpoolDir(), nil)
	}
	for {
		ino := tempIno(d.tempCount)
		d.tempCount++
		if !d.tempInoInUseLocked(ino) {
			dr.ino = ino
			break
		}
	}
	dr.name = name
	d.temps[name] = dr
}

func (d *segmentsDir) tempInoInUseLocked(ino uint64) bool {
	if d.tempCount <= tempWindow {
		return false // the counter has not wrapped yet
	}
	for _, t := range d.temps {
		if t.ino == ino {
			return true
		}
	}
	return false
}

// child returns the node for name: the one the kernel already knows under
// that name if it still stands for it, else a new one with the right
// identity. Returns nil if a temp file vanished meanwhile.
func (d *segmentsDir) child(ctx context.Context, name string) *gofs.Inode {
	if ch := d.GetChild(name); ch != nil {
		if n, ok := ch.Operations().(*fileNode); ok {
			d.mu.Lock()
			bound := n.name == name && !n.unlinked && !n.forgotten
			d.mu.Unlock()
			if bound {
				return ch
			}
		}
	}
	n := &fileNode{dir: d, name: name}
	var attr gofs.StableAttr
	d.mu.Lock()
	switch kind, id := classify(name); kind {
	case segmentName:
		var gen uint64
		if dp := d.displaced[id]; dp != nil {
			gen = dp.gen
		}
		attr = segmentStableAttr(id, gen)
		n.keyed, n.origin = true, id
	case tempName:
		dr := d.temps[name]
		if dr == nil {
			d.mu.Unlock()
			return nil
		}
		attr = gofs.StableAttr{Mode: syscall.S_IFREG, Ino: dr.ino}
	}
	d.mu.Unlock()
	return d.NewInode(ctx, n, attr)
}

// detachLocked records that node n no longer stands for the segment it was
// created for. d.mu must be held.
func (d *segmentsDir) detachLocked(n *fileNode) {
	if !n.keyed || n.counted || n.forgotten {
		return
	}
	dp := d.displaced[n.origin]
	if dp == nil {
		dp = &displacement{}
		d.displaced[n.origin] = dp
	}
	d.lastGen++
	dp.gen = d.lastGen
	dp.live++
	n.counted = true
}

// forget is called when the kernel forgets node n.
func (d *segmentsDir) forget(n *fileNode) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n.forgotten = true
	if !n.counted {
		return
	}
	n.counted = false
	if dp := d.displaced[n.origin]; dp != nil {
		if dp.live--; dp.live <= 0 {
			delete(d.displaced, n.origin)
		}
	}
}

// childNode returns the fileNode the kernel knows under name, if any.
func (d *segmentsDir) childNode(name string) *fileNode {
	if ch := d.GetChild(name); ch != nil {
		n, _ := ch.Operations().(*fileNode)
		return n
	}
	return nil
}

// markUnlinked records that the node known under name lost that name.
func (d *segmentsDir) markUnlinked(name string) {
	n := d.childNode(name)
	if n == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if n.name == name {
		n.unlinked = true
		d.detachLocked(n)
	}
}

// rebind moves the node bindings after a successful rename from → to.
func (d *segmentsDir) rebind(from, to string) {
	src, dst := d.childNode(from), d.childNode(to)
	d.mu.Lock()
	defer d.mu.Unlock()
	if dst != nil && dst != src && dst.name == to {
		dst.unlinked = true
		d.detachLocked(dst)
	}
	if src != nil && src.name == from {
		src.name = to
		d.detachLocked(src)
	}
}

// published is called after a node's draft was stored: the kernel's cached
// attributes (mtime) are refreshed, and the next open does not keep the page
// cache.
func (d *segmentsDir) published(n *fileNode) {
	d.mu.Lock()
	n.cacheKey = ""
	d.mu.Unlock()
	// Asynchronously: a notification sent while the kernel waits for this
	// request could deadlock. Offset -1 invalidates attributes only; the
	// pages written through this node are the published bytes.
	go n.NotifyContent(-1, 0)
}

// flush publishes the draft of handle h if h changed it. It runs for
// close(2) (FLUSH), fsync and RELEASE; the result of the Put is what close
// returns.
func (d *segmentsDir) flush(ctx context.Context, h *openFile, op string) syscall.Errno {
	if !h.dirty() {
		return 0
	}
	if d.fsys.discard.Load() {
		return syscall.EIO // unmounting: writes still open after the grace period are dropped
	}
	// The caller's close must not be undone by a signal arriving during
	// the Put (Go programs get SIGURG all the time).
	ctx = context.WithoutCancel(ctx)
	for {
		d.mu.Lock()
		name := h.draft.name
		d.mu.Unlock()
		kind, id := classify(name)
		if kind != segmentName {
			return 0 // a temp file, or unlinked: nothing to store
		}
		unlock := d.lockNames(name)
		d.mu.Lock()
		moved := h.draft.name != name
		d.mu.Unlock()
		if moved {
			unlock()
			continue
		}
		err := h.draft.publish(ctx, d.fsys.store, id, false, false)
		unlock()
		if err != nil {
			return d.fsys.fail(op, name, err)
		}
		d.published(h.node)
		return 0
	}
}

// attrOf fills out the attributes of node n; h is an open handle of n, if
// the kernel (or go-fuse) named one.
func (d *segmentsDir) attrOf(ctx context.Context, n *fileNode, h *openFile, out *fuse.Attr) syscall.Errno {
	d.mu.Lock()
	name, unlinked := n.name, n.unlinked
	dr := d.draftLocked(name)
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
				d.fsys.fileAttr(out, info.Size, info.ModTime, 1)
				return 0
			}
			if h == nil || !errors.Is(err, backend.ErrNotFound) {
				return d.fsys.fail("getattr", name, err)
			}
		}
	}
	if h == nil {
		return syscall.ENOENT
	}
	// Unlinked but open (fstat after unlink): what the handle sees.
	size, mtime := h.attr()
	d.fsys.fileAttr(out, size, mtime, 0)
	return 0
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
			return d.fsys.fail("truncate", d.nameOf(n), err)
		}
		h.wrote(seq)
		return 0
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
			return d.fsys.fail("truncate", name, err)
		}
		dr = newDraft(d.fsys.store.SpoolDir(), r)
		release = dr.close
	}
	defer release()
	if _, err := dr.truncate(int64(size), limit); err != nil {
		return d.fsys.fail("truncate", name, err)
	}
	if kind == segmentName {
		if err := dr.publish(context.WithoutCancel(ctx), d.fsys.store, id, false, false); err != nil {
			return d.fsys.fail("truncate", name, err)
		}
		d.published(n)
	}
	return 0
}

// setMtime applies utimes. A file with unpublished changes remembers the
// mtime and publishes with it (cp -p, rsync and tar set it before close);
// otherwise it is stored at once with Store.SetModTime.
func (d *segmentsDir) setMtime(ctx context.Context, n *fileNode, h *openFile, mtime time.Time, explicit bool) syscall.Errno {
	var dr *draft
	if h != nil && h.draft != nil {
		dr = h.draft
	} else {
		d.mu.Lock()
		name, unlinked := n.name, n.unlinked
		d.mu.Unlock()
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
			dr.setMtime(mtime, explicit)
			dr.publishMu.Unlock()
			return 0
		}
		dr.publishMu.Unlock()
	}
	_, id := classify(name)
	if err := d.fsys.store.SetModTime(context.WithoutCancel(ctx), id, mtime); err != nil {
		return d.fsys.fail("setmtime", name, err)
	}
	if dr != nil {
		dr.setMtime(mtime, false)
	}
	return 0
}

// nameOf returns the name node n is bound to.
func (d *segmentsDir) nameOf(n *fileNode) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return n.name
}

// lockBinding takes the name lock of the name node n is bound to, making sure
// no rename moved it meanwhile.
func (d *segmentsDir) lockBinding(n *fileNode) (name string, unlock func(), errno syscall.Errno) {
	for {
		d.mu.Lock()
		name, unlinked := n.name, n.unlinked
		d.mu.Unlock()
		if unlinked {
			return "", nil, syscall.ENOENT
		}
		unlock := d.lockNames(name)
		d.mu.Lock()
		same := n.name == name && !n.unlinked
		d.mu.Unlock()
		if same {
			return name, unlock, 0
		}
		unlock()
	}
}

// closeAll discards every draft (at unmount).
func (d *segmentsDir) closeAll() {
	d.mu.Lock()
	var all []*draft
	for id, dr := range d.drafts {
		all = append(all, dr)
		delete(d.drafts, id)
	}
	for name, dr := range d.temps {
		all = append(all, dr)
		delete(d.temps, name)
	}
	d.mu.Unlock()
	for _, dr := range all {
		dr.close()
	}
}

var _ = (gofs.NodeGetattrer)((*segmentsDir)(nil))

func (d *segmentsDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fsys.dirAttr(&out.Attr, &d.st)
	return 0
}

var _ = (gofs.NodeSetattrer)((*segmentsDir)(nil))

func (d *segmentsDir) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if d.fsys.readOnly {
		return syscall.EROFS
	}
	d.st.setattr(in)
	return d.Getattr(ctx, f, out)
}

var _ = (gofs.NodeStatfser)((*segmentsDir)(nil))

func (d *segmentsDir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return d.fsys.statfs(out)
}

var _ = (gofs.NodeLookuper)((*segmentsDir)(nil))

// Lookup answers with Store.Stat (or the draft of a file being written), so
// stat and ls -l never fetch data.
func (d *segmentsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	kind, id := classify(name)
	if kind == badName {
		return nil, syscall.ENOENT
	}
	if dr := d.draftOf(name); dr != nil {
		size, mtime := dr.attr()
		d.fsys.fileAttr(&out.Attr, size, mtime, 1)
	} else if kind == tempName {
		return nil, syscall.ENOENT
	} else {
		info, err := d.fsys.store.Stat(ctx, id)
		if err != nil {
			return nil, d.fsys.fail("lookup", name, err)
		}
		d.fsys.fileAttr(&out.Attr, info.Size, info.ModTime, 1)
	}
	ch := d.child(ctx, name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	return ch, 0
}

var _ = (gofs.NodeCreater)((*segmentsDir)(nil))

// Create makes a new file. Nothing is stored yet: a segment is published
// when the file is closed, a temp file only when it is renamed onto an id.
func (d *segmentsDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if d.fsys.readOnly {
		return nil, nil, 0, syscall.EROFS
	}
	if d.fsys.closing.Load() {
		return nil, nil, 0, syscall.ESHUTDOWN
	}
	kind, id := classify(name)
	if kind == badName {
		return nil, nil, 0, syscall.EINVAL
	}
	unlock := d.lockNames(name)
	defer unlock()

	excl := flags&syscall.O_EXCL != 0
	var dr *draft
	var created bool
	switch kind {
	case tempName:
		d.mu.Lock()
		dr = d.temps[name]
		if dr != nil && excl {
			d.mu.Unlock()
			return nil, nil, 0, syscall.EEXIST
		}
		if dr == nil {
			d.newTempLocked(name, nil)
			dr, created = d.temps[name], true
		}
		dr.refs++
		d.mu.Unlock()
	case segmentName:
		var err error
		dr, created, err = d.openSegmentDraft(ctx, id, true, excl)
		if err != nil {
			return nil, nil, 0, d.fsys.fail("create", name, err)
		}
	}
	h := &openFile{draft: dr, write: true}
	if created {
		h.wroteSeq = 1 // a new file is published on close even if empty
	} else if flags&syscall.O_TRUNC != 0 {
		seq, err := dr.truncate(0, d.fsys.store.MaxSegmentBytes())
		if err != nil {
			d.releaseDraft(dr)
			return nil, nil, 0, d.fsys.fail("create", name, err)
		}
		h.wroteSeq = seq
	}
	ch := d.child(ctx, name)
	if ch == nil {
		d.releaseDraft(dr)
		return nil, nil, 0, syscall.ENOENT
	}
	h.node = ch.Operations().(*fileNode)
	d.mu.Lock()
	h.node.cacheKey = ""
	d.mu.Unlock()
	size, mtime := dr.attr()
	d.fsys.fileAttr(&out.Attr, size, mtime, 1)
	d.fsys.addHandle(h)
	if created {
		d.st.modified()
	}
	return ch, h, fuse.FOPEN_DIRECT_IO, 0
}

var _ = (gofs.NodeUnlinker)((*segmentsDir)(nil))

// Unlink deletes the segment from the store (or forgets a temp file).
// Readers keep their pinned versions; writers still open keep writing into a
// draft that is no longer published.
func (d *segmentsDir) Unlink(ctx context.Context, name string) syscall.Errno {
	if d.fsys.readOnly {
		return syscall.EROFS
	}
	kind, id := classify(name)
	if kind == badName {
		return syscall.ENOENT
	}
	unlock := d.lockNames(name)
	defer unlock()
	var idle *draft
	switch kind {
	case tempName:
		d.mu.Lock()
		dr := d.temps[name]
		if dr == nil {
			d.mu.Unlock()
			return syscall.ENOENT
		}
		if d.unbindLocked(dr) {
			idle = dr
		}
		d.mu.Unlock()
	case segmentName:
		err := d.fsys.store.Delete(context.WithoutCancel(ctx), id)
		d.mu.Lock()
		dr := d.drafts[id]
		if err != nil && !(dr != nil && errors.Is(err, backend.ErrNotFound)) {
			d.mu.Unlock()
			return d.fsys.fail("unlink", name, err)
		}
		if dr != nil && d.unbindLocked(dr) {
			idle = dr
		}
		d.mu.Unlock()
	}
	if idle != nil {
		idle.close()
	}
	d.markUnlinked(name)
	d.st.modified()
	return 0
}

var _ = (gofs.NodeRenamer)((*segmentsDir)(nil))

// Rename moves a file within the segments directory:
//
//	id → id        Store.Rename (or a Put of the source's unpublished draft)
//	.tmp → id      Put from the temp file's spool: how rsync and editors commit
//	.tmp → .tmp    in memory
//	id → .tmp      the segment's bytes move into a spool; the segment is deleted
//
// The destination is replaced atomically for readers. Renames out of the
// directory fail with EXDEV; onto names that are neither ids nor dot-names
// with EINVAL.
func (d *segmentsDir) Rename(ctx context.Context, from string, newParent gofs.InodeEmbedder, to string, flags uint32) syscall.Errno {
	if d.fsys.readOnly {
		return syscall.EROFS
	}
	if newParent.EmbeddedInode() != d.EmbeddedInode() {
		return syscall.EXDEV
	}
	if flags&^renameNoReplace != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE, RENAME_WHITEOUT
	}
	fk, fromID := classify(from)
	tk, toID := classify(to)
	if fk == badName {
		return syscall.ENOENT
	}
	if tk == badName {
		return syscall.EINVAL
	}
	if from == to {
		return 0
	}
	unlock := d.lockNames(from, to)
	defer unlock()
	ctx = context.WithoutCancel(ctx)
	if flags&renameNoReplace != 0 {
		exists, err := d.exists(ctx, to)
		if err != nil {
			return d.fsys.fail("rename", to, err)
		}
		if exists {
			return syscall.EEXIST
		}
	}
	var err error
	switch {
	case fk == segmentName && tk == segmentName:
		err = d.renameSegment(ctx, fromID, toID)
	case fk == tempName && tk == segmentName:
		err = d.renameTempToSegment(ctx, from, toID)
	case fk == tempName && tk == tempName:
		err = d.renameTemp(from, to)
	default:
		err = d.renameSegmentToTemp(ctx, fromID, to)
	}
	if err != nil {
		return d.fsys.fail("rename", from+" to "+to, err)
	}
	d.rebind(from, to)
	d.st.modified()
	return 0
}

// exists reports whether name exists (for RENAME_NOREPLACE).
func (d *segmentsDir) exists(ctx context.Context, name string) (bool, error) {
	if d.draftOf(name) != nil {
		return true, nil
	}
	kind, id := classify(name)
	if kind != segmentName {
		return false, nil
	}
	_, err := d.fsys.store.Stat(ctx, id)
	if errors.Is(err, backend.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (d *segmentsDir) renameSegment(ctx context.Context, from, to segment.ID) error {
	src := d.attachDraft(from.String())
	if src != nil {
		defer d.releaseDraft(src)
	}
	if src != nil && src.dirty() {
		// The source's newest bytes are unpublished (a new file, or
		// writes not yet closed): they become the destination directly.
		if err := src.publish(ctx, d.fsys.store, to, false, false); err != nil {
			return err
		}
		if err := d.fsys.store.Delete(ctx, from); err != nil && !errors.Is(err, backend.ErrNotFound) {
			return err
		}
	} else if err := d.fsys.store.Rename(ctx, from, to); err != nil {
		return err
	}
	var idle *draft
	d.mu.Lock()
	if dst := d.drafts[to]; dst != nil && dst != src && d.unbindLocked(dst) {
		idle = dst
	}
	if src != nil && d.drafts[from] == src {
		delete(d.drafts, from)
		src.name = to.String()
		d.drafts[to] = src
	}
	d.mu.Unlock()
	if idle != nil {
		idle.close()
	}
	return nil
}

func (d *segmentsDir) renameTempToSegment(ctx context.Context, from string, to segment.ID) error {
	tmp := d.attachDraft(from)
	if tmp == nil {
		return fmt.Errorf("temp file %q: %w", from, backend.ErrNotFound)
	}
	defer d.releaseDraft(tmp)
	if err := tmp.publish(ctx, d.fsys.store, to, true, true); err != nil {
		return err
	}
	var idle *draft
	d.mu.Lock()
	if dst := d.drafts[to]; dst != nil && d.unbindLocked(dst) {
		idle = dst
	}
	delete(d.temps, from)
	// Handles still open on the temp file now write to the segment; the
	// draft is dropped with the last of them (releaseDraft above, or theirs).
	tmp.name = to.String()
	d.drafts[to] = tmp
	d.mu.Unlock()
	if idle != nil {
		idle.close()
	}
	return nil
}

func (d *segmentsDir) renameTemp(from, to string) error {
	var idle *draft
	d.mu.Lock()
	tmp := d.temps[from]
	if tmp == nil {
		d.mu.Unlock()
		return fmt.Errorf("temp file %q: %w", from, backend.ErrNotFound)
	}
	if dst := d.temps[to]; dst != nil && d.unbindLocked(dst) {
		idle = dst
	}
	delete(d.temps, from)
	tmp.name = to
	d.temps[to] = tmp
	d.mu.Unlock()
	if idle != nil {
		idle.close()
	}
	return nil
}

func (d *segmentsDir) renameSegmentToTemp(ctx context.Context, from segment.ID, to string) error {
	src, _, err := d.openSegmentDraft(ctx, from, false, false)
	if err != nil {
		return err
	}
	defer d.releaseDraft(src)
	if err := src.ensureLoaded(); err != nil {
		return err
	}
	if err := d.fsys.store.Delete(ctx, from); err != nil && !errors.Is(err, backend.ErrNotFound) {
		return err
	}
	var idle *draft
	d.mu.Lock()
	if dst := d.temps[to]; dst != nil && d.unbindLocked(dst) {
		idle = dst
	}
	if d.drafts[from] == src {
		delete(d.drafts, from)
	}
	d.newTempLocked(to, src)
	d.mu.Unlock()
	if idle != nil {
		idle.close()
	}
	return nil
}

var _ = (gofs.NodeMkdirer)((*segmentsDir)(nil))

func (d *segmentsDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, d.refuse()
}

var _ = (gofs.NodeRmdirer)((*segmentsDir)(nil))

// Rmdir: there are no subdirectories (go-fuse's default would succeed).
func (d *segmentsDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	return d.refuse()
}

var _ = (gofs.NodeMknoder)((*segmentsDir)(nil))

func (d *segmentsDir) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, d.refuse()
}

var _ = (gofs.NodeSymlinker)((*segmentsDir)(nil))

func (d *segmentsDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, d.refuse()
}

var _ = (gofs.NodeLinker)((*segmentsDir)(nil))

// Link: a segment has exactly one name, so there are no hard links.
func (d *segmentsDir) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, d.refuse()
}
