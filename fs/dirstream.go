package fs

import (
	"context"
	"slices"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/scribefs/scribefs/segment"
)

// listBuffer is how many listed segments may wait between Store.List and the
// kernel reading the directory. It bounds memory however many segments there
// are; the price is that Store.List's callback blocks while a reader of the
// directory (ls, rsync) is slower than the listing.
const listBuffer = 256

// segmentStream lists the segments directory lazily: first the temporary
// files (a snapshot, they are few), then the segments in id order as
// Store.List streams them from a goroutine, with files that exist only as
// drafts so far (created, not yet closed) merged in at their place.
//
// Entry offsets are cookies that say where to resume, not positions, so
// that telldir/seekdir (Samba, NFS re-exports) neither repeat nor skip
// entries when the directory changes in between: seeking restarts the
// listing from the place the cookie names.
//
//	0                        the start
//	id + 2                   after segment id, for id < bigStart (2^62-2):
//	                         resume at the first id above it
//	bigCookie + k            after the k-th segment with id >= bigStart:
//	                         positional there (the ids do not fit)
//	tempCookie + k           after the k-th temp file (they come first, and
//	                         are positional: they are few and short-lived)
//
// All cookies stay below 2^63, as lseek on a directory requires.
type segmentStream struct {
	d      *segmentsDir
	temps  []fuse.DirEntry
	staged []segment.ID // ids with a draft, ascending

	cancel   context.CancelFunc
	items    <-chan listItem
	pending  *segment.Info // received from the store, not yet merged
	listDone bool
	err      syscall.Errno

	next   *listed // lookahead filled by HasNext
	cookie uint64  // offset of the entry returned last (0: none yet)
	last   listed  // the entry returned last, for readdirplus lookups

	// Where the listing resumes (see seek): segments below from are
	// skipped, then bigSkip of those at or above bigStart.
	from       segment.ID
	bigSkip    uint64
	bigEmitted uint64 // segments at or above bigStart returned, counting skipped ones
	tempsDone  uint64 // temp files returned, counting skipped ones

	// changed holds the names changed through the mount since the
	// listing began (see segmentsDir.noteChange): their listed Info may
	// be stale. allChanged: too many to track, trust none. Guarded by
	// segmentsDir.listMu.
	changed    map[string]struct{}
	allChanged bool
}

// Directory offset cookies (see segmentStream).
const (
	segCookie  = 2
	bigStart   = 1<<62 - segCookie
	bigCookie  = 1 << 62
	tempCookie = 1<<63 - 1<<32
)

// maxTrackedChanges bounds segmentStream.changed.
const maxTrackedChanges = 1 << 16

// noteChange records that name changed through the mount (written,
// truncated, removed, renamed, its mtime set), for the listings in
// progress: readdirplus must not describe it with what Store.List said
// before.
func (d *segmentsDir) noteChange(names ...string) {
	d.listMu.Lock()
	defer d.listMu.Unlock()
	for s := range d.listings {
		for _, name := range names {
			if len(s.changed) >= maxTrackedChanges {
				s.allChanged = true
				break
			}
			if s.changed == nil {
				s.changed = make(map[string]struct{})
			}
			s.changed[name] = struct{}{}
		}
	}
}

// changedSince reports whether name changed since the listing began.
func (s *segmentStream) changedSince(name string) bool {
	s.d.listMu.Lock()
	defer s.d.listMu.Unlock()
	_, ok := s.changed[name]
	return ok || s.allChanged
}

type listItem struct {
	info segment.Info
	err  error
}

// listed is one directory entry, with the Info it was listed with if it came
// from Store.List.
type listed struct {
	entry   fuse.DirEntry
	info    segment.Info
	hasInfo bool
}

var _ = (gofs.DirStream)((*segmentStream)(nil))

func (d *segmentsDir) newStream() *segmentStream {
	s := &segmentStream{d: d}
	d.mu.Lock()
	for name, dr := range d.temps {
		s.temps = append(s.temps, fuse.DirEntry{Name: name, Ino: dr.ino, Mode: syscall.S_IFREG})
	}
	for id := range d.drafts {
		s.staged = append(s.staged, id)
	}
	d.mu.Unlock()
	slices.SortFunc(s.temps, func(a, b fuse.DirEntry) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(s.staged)
	return s
}

// start runs Store.List in a goroutine feeding a small channel. It stops when
// the stream is closed or the file system is unmounted.
func (s *segmentStream) start() {
	ctx, cancel := context.WithCancel(s.d.fsys.ctx)
	items := make(chan listItem, listBuffer)
	s.cancel, s.items = cancel, items
	s.d.listMu.Lock()
	s.d.listings[s] = struct{}{}
	s.d.listMu.Unlock()
	store := s.d.fsys.store
	go func() {
		defer close(items)
		err := store.List(ctx, func(info segment.Info) error {
			select {
			case items <- listItem{info: info}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if err != nil && ctx.Err() == nil {
			select {
			case items <- listItem{err: err}:
			case <-ctx.Done():
			}
		}
	}()
}

func segmentEntry(id segment.ID) fuse.DirEntry {
	ino, _ := segmentIno(id)
	return fuse.DirEntry{Name: id.String(), Ino: ino, Mode: syscall.S_IFREG}
}

// fill makes s.next the next entry, if there is one.
func (s *segmentStream) fill() {
	for s.next == nil && s.err == 0 {
		if len(s.temps) > 0 {
			s.next = &listed{entry: s.temps[0]}
			s.temps = s.temps[1:]
			return
		}
		if s.items == nil && !s.listDone {
			s.start()
		}
		if s.pending == nil && !s.listDone {
			it, ok := <-s.items
			switch {
			case !ok:
				s.listDone = true
			case it.err != nil:
				s.listDone = true
				s.err = s.d.fsys.fail("readdir", "", it.err)
				return
			case it.info.ID < s.from:
				continue // before the place resumed at
			default:
				s.pending = &it.info
			}
		}
		for len(s.staged) > 0 && s.staged[0] < s.from {
			s.staged = s.staged[1:]
		}
		if len(s.staged) > 0 && s.pending != nil && s.staged[0] == s.pending.ID {
			s.staged = s.staged[1:] // listed by the store too
		}
		var next *listed
		if len(s.staged) > 0 && (s.pending == nil || s.staged[0] < s.pending.ID) {
			next = &listed{entry: segmentEntry(s.staged[0])}
			s.staged = s.staged[1:]
		} else if s.pending != nil {
			next = &listed{entry: segmentEntry(s.pending.ID), info: *s.pending, hasInfo: true}
			s.pending = nil
		} else {
			return // the end
		}
		if s.bigSkip > 0 && next.id() >= bigStart {
			s.bigSkip--
			continue
		}
		s.next = next
	}
}

// id returns the segment id of a listed segment.
func (l *listed) id() segment.ID {
	if l.hasInfo {
		return l.info.ID
	}
	_, id := classify(l.entry.Name)
	return id
}

// HasNext waits for the store when the buffer is empty.
func (s *segmentStream) HasNext() bool {
	s.fill()
	return s.next != nil || s.err != 0
}

func (s *segmentStream) Next() (fuse.DirEntry, syscall.Errno) {
	s.fill()
	if s.next == nil {
		if errno := s.err; errno != 0 {
			return fuse.DirEntry{}, errno
		}
		return fuse.DirEntry{}, syscall.EIO // HasNext said there is none
	}
	s.last, s.next = *s.next, nil
	switch kind, id := classify(s.last.entry.Name); {
	case kind == tempName:
		s.tempsDone++
		s.cookie = tempCookie + s.tempsDone
	case id < bigStart:
		s.cookie = uint64(id) + segCookie
	default:
		s.bigEmitted++
		s.cookie = bigCookie + s.bigEmitted
	}
	s.last.entry.Off = s.cookie
	return s.last.entry, 0
}

func (s *segmentStream) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.d.listMu.Lock()
	delete(s.d.listings, s)
	s.changed, s.allChanged = nil, false
	s.d.listMu.Unlock()
}

// seek repositions the stream after the entry whose offset (cookie) is
// off; 0 is the start.
func (s *segmentStream) seek(off uint64) syscall.Errno {
	if off == s.cookie && s.err == 0 {
		return 0
	}
	s.Close()
	fresh := s.d.newStream()
	s.d.listMu.Lock() // changed is guarded by it
	*s = *fresh
	s.d.listMu.Unlock()
	switch {
	case off == 0:
	case off > tempCookie:
		k := off - tempCookie
		s.temps = s.temps[min(k, uint64(len(s.temps))):]
		s.tempsDone = k
	case off > bigCookie:
		s.temps = nil
		s.from = bigStart
		s.bigSkip, s.bigEmitted = off-bigCookie, off-bigCookie
	case off >= segCookie:
		s.temps = nil
		s.from = segment.ID(off-segCookie) + 1
	default:
		return syscall.EINVAL
	}
	s.cookie = off
	return 0
}

var _ = (gofs.NodeReaddirer)((*segmentsDir)(nil))

// Readdir lists the directory as a lazy stream; it is what every directory
// handle (OpendirHandle) reads from.
func (d *segmentsDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return d.newStream(), 0
}

var _ = (gofs.NodeOpendirHandler)((*segmentsDir)(nil))

// OpendirHandle gives each open directory its own handle over a stream, so
// that readdirplus can describe each entry with the Info Store.List already
// returned instead of asking Store.Stat again (FileLookuper).
func (d *segmentsDir) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{d: d}, 0, 0
}

// dirHandle is an open segments directory. go-fuse serialises the calls on
// one handle.
type dirHandle struct {
	d *segmentsDir
	s *segmentStream
}

func (h *dirHandle) stream(ctx context.Context) *segmentStream {
	if h.s == nil {
		ds, _ := h.d.Readdir(ctx)
		h.s = ds.(*segmentStream)
	}
	return h.s
}

var _ = (gofs.FileReaddirenter)((*dirHandle)(nil))

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	s := h.stream(ctx)
	if !s.HasNext() {
		return nil, 0
	}
	e, errno := s.Next()
	if errno != 0 {
		return nil, errno
	}
	return &e, 0
}

var _ = (gofs.FileLookuper)((*dirHandle)(nil))

// Lookup describes the entry just listed for readdirplus. An entry whose
// listing could not tell the true size (a Scribe Ledger object whose sidecar
// is not read yet, right after the first mount), or that changed through
// the mount since the listing began (Store.List's answer for it may have
// waited in the buffer meanwhile), is looked up in full: the kernel would
// otherwise keep the listed size and cut a read right after the listing,
// or keep a removed name as a cached entry. A name that no longer exists
// is then sent without attributes (the kernel caches nothing for it).
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if h.s == nil || !h.s.last.hasInfo || h.s.last.entry.Name != name || h.d.draftOf(name) != nil || h.s.last.info.Unresolved || h.s.changedSince(name) {
		return h.d.Lookup(ctx, name, out)
	}
	info := h.s.last.info
	h.d.fsys.fileAttr(&out.Attr, info.Size, info.ModTime, 1)
	ch := h.d.child(ctx, name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	return ch, 0
}

var _ = (gofs.FileSeekdirer)((*dirHandle)(nil))

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	return h.stream(ctx).seek(off)
}

var _ = (gofs.FileReleasedirer)((*dirHandle)(nil))

func (h *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) {
	if h.s != nil {
		h.s.Close()
	}
}
