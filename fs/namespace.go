package fs

import (
	"context"
	"errors"
	"hash/fnv"
	"slices"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// The namespace state of the segments directory: name locks, which draft a
// name has, and which node identity a name gets.

// displacement is an entry of segmentsDir.displaced.
type displacement struct {
	gen  uint64 // generation for new nodes of the id
	live int    // displaced nodes the kernel still references
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
	if dr.refs > 0 {
		// Still open: a stream storing it under its old name is of no use
		// now (the draft is never published). Not under d.mu: the draft's
		// lock may be held by a publish in progress.
		go dr.dropStream()
	}
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
	if d.tempCount <= tempWindow-foldCount {
		return false // the counter has not wrapped yet
	}
	for _, t := range d.temps {
		if t.ino == ino {
			return true
		}
	}
	return false
}

// child returns the node for name, with the identity the name has now:
// segmentStableAttr of its id (plus the displacement generation, if nodes
// created for the id were renamed away or unlinked while still known to the
// kernel), or the temp file's number. go-fuse recognises a node it already
// has by that identity. A node renamed onto the name keeps its old number
// for as long as the kernel's entry for it lasts (rename keeps the inode, as
// POSIX wants); the next lookup brings the name back to its own, stable
// number. Returns nil if a temp file vanished meanwhile.
func (d *segmentsDir) child(ctx context.Context, name string) *gofs.Inode {
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
		attr = tempStableAttr(dr.ino)
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

// retireLocked retires node n (see fileNode.retired): it keeps serving its
// pinned readers their version, and new lookups of its name get a new node.
// d.mu must be held.
func (d *segmentsDir) retireLocked(n *fileNode) {
	if n.retired {
		return
	}
	n.retired, n.unlinked = true, true
	d.detachLocked(n)
}

// retireForChange is called before the file behind node n is changed
// through it (an open for writing, a truncation by path). If pinned readers
// read n's version through the kernel's page cache, the kernel's size and
// cache of that inode must stay theirs: n is retired and ESTALE returned,
// on which the kernel looks the name up again (getting a new node) and
// retries the call once, through the new inode.
func (d *segmentsDir) retireForChange(n *fileNode) syscall.Errno {
	d.mu.Lock()
	if n.retired {
		d.mu.Unlock()
		return syscall.ESTALE
	}
	if n.cacheUsers == 0 {
		d.mu.Unlock()
		return 0
	}
	name := n.name
	d.retireLocked(n)
	d.mu.Unlock()
	// Not under our locks, and asynchronously: the kernel handles it under
	// the directory's lock, which the caller's request may hold.
	go d.NotifyEntry(name)
	return syscall.ESTALE
}

// retireStale retires the node the kernel knows under name if its pinned
// readers read another version than info, the current one (nil: a draft,
// which is always another version), so that a lookup answering with info
// makes a new node for it.
func (d *segmentsDir) retireStale(name string, info *segment.Info) {
	n := d.childNode(name)
	if n == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if n.name == name && n.cacheUsers > 0 && (info == nil || !sameContent(*info, n.cacheInfo)) {
		d.retireLocked(n)
	}
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
		name, unlinked, retired := n.name, n.unlinked, n.retired
		d.mu.Unlock()
		if retired || unlinked {
			// The kernel's entry is stale (the name has a new node, or
			// none: the file was removed, perhaps by a failed write
			// whose notification is still on its way): it looks the
			// name up again and retries.
			return "", nil, syscall.ESTALE
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
