package fs

import (
	"context"
	"errors"
	"fmt"
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
// changes what a name refers to (create, unlink, Server.Delete, rename,
// publish, truncate by path), so that for example a publish can never resurrect a segment that an
// unlink just removed; then d.mu, held briefly, guards the maps below and the
// binding fields of every fileNode and draft; then a draft's own locks.
// Store calls are made under name locks but never under d.mu.
type segmentsDir struct {
	gofs.Inode
	fsys *filesystem
	st   dirState

	nameLocks [256]sync.Mutex // striped by a hash of the name; collisions only serialise

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

	// listMu guards listings, the directory listings in progress (from
	// the start of their Store.List), and their changed sets. Taken
	// alone.
	listMu   sync.Mutex
	listings map[*segmentStream]struct{}
}

func newSegmentsDir(fsys *filesystem) *segmentsDir {
	return &segmentsDir{
		fsys:      fsys,
		st:        dirState{mode: dirMode, mtime: time.Now()},
		drafts:    make(map[segment.ID]*draft),
		temps:     make(map[string]*draft),
		displaced: make(map[segment.ID]*displacement),
		listings:  make(map[*segmentStream]struct{}),
	}
}

// refuse is the answer to creating anything but regular files.
func (d *segmentsDir) refuse() syscall.Errno {
	if d.fsys.readOnly {
		return syscall.EROFS
	}
	return syscall.EPERM
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

var _ = (gofs.NodeFsyncer)((*segmentsDir)(nil))

// Fsync of the directory succeeds: renames and unlinks are stored when they
// return, and a created file is stored at its close (see rootDir.Fsync).
func (d *segmentsDir) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	return 0
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
		d.retireStale(name, nil)
	} else if kind == tempName {
		return nil, syscall.ENOENT
	} else {
		info, err := d.fsys.store.Stat(ctx, id)
		if err != nil {
			return nil, d.fsys.fail("lookup", name, err)
		}
		d.fsys.fileAttr(&out.Attr, info.Size, info.ModTime, 1)
		// A new version gets a new node: the kernel must not apply its
		// size to the inode that readers of the old one use.
		d.retireStale(name, &info)
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
	h := &openFile{draft: dr, write: true, append: flags&syscall.O_APPEND != 0}
	if created {
		h.wroteLocked(1, callerProcess(ctx)) // a new file is published on close even if empty; not shared yet
	} else if flags&syscall.O_TRUNC != 0 {
		seq, err := dr.truncate(0, d.fsys.store.MaxSegmentBytes())
		if err != nil {
			d.releaseDraft(dr)
			return nil, nil, 0, d.fsys.fail("create", name, err)
		}
		h.wroteLocked(seq, callerProcess(ctx)) // not shared yet
	}
	d.retireStale(name, nil) // the file is being written: a new inode for it
	ch := d.child(ctx, name)
	if ch == nil {
		d.releaseDraft(dr)
		return nil, nil, 0, syscall.ENOENT
	}
	h.node = ch.Operations().(*fileNode)
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
	if kind == segmentName {
		if err := d.remove(ctx, id); err != nil {
			return d.fsys.fail("unlink", name, err)
		}
		return 0
	}
	unlock := d.lockNames(name)
	defer unlock()
	d.mu.Lock()
	dr := d.temps[name]
	if dr == nil {
		d.mu.Unlock()
		return syscall.ENOENT
	}
	idle := d.unbindLocked(dr)
	d.mu.Unlock()
	if idle {
		dr.close()
	}
	d.markUnlinked(name)
	d.st.modified()
	return 0
}

// remove deletes segment id as unlink does, under its name lock: the segment
// leaves the store, and a draft bound to the name (a file open for writing
// through the mount) is detached from it, so that its writers' close never
// stores it again. It is how Server.Delete removes a segment for others (the
// control socket) too, so that both agree on what deleting an open file
// means. A segment that exists only as a draft (created, not yet closed)
// is removed by detaching the draft.
func (d *segmentsDir) remove(ctx context.Context, id segment.ID) error {
	name := id.String()
	unlock := d.lockNames(name)
	defer unlock()
	err := d.fsys.store.Delete(context.WithoutCancel(ctx), id)
	d.mu.Lock()
	dr := d.drafts[id]
	if err != nil && !(dr != nil && errors.Is(err, backend.ErrNotFound)) {
		d.mu.Unlock()
		return err
	}
	idle := dr != nil && d.unbindLocked(dr)
	d.mu.Unlock()
	if idle {
		dr.close()
	}
	d.markUnlinked(name)
	d.noteChange(name)
	d.st.modified()
	return nil
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
	d.noteChange(from, to)
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
		if err := src.publish(ctx, d.fsys.store, to, false); err != nil {
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
	if err := tmp.publish(ctx, d.fsys.store, to, true); err != nil {
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
	src.dropStream() // a temp file is published only by a rename onto an id
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
