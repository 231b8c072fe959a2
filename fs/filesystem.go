package fs

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

const (
	// fileMode is the permission of every segment and temp file. chmod is
	// accepted and ignored (rsync -a, tar -x and cp -p chmod every file), so
	// a fixed, ordinary mode is shown; 0644 lets other users read when the
	// mount allows them in (Options.AllowOther).
	fileMode = 0o644
	// dirMode is the initial permission of both directories; chmod on them
	// is remembered for the life of the mount.
	dirMode = 0o755

	// statfsBlock is the block size reported by statfs and used for st_blocks.
	statfsBlock = 4096
	// ioBlock is st_blksize, the I/O size tools such as cp and cat pick for
	// their buffers. It matches MaxWrite, so one write(2) of that size is
	// one FUSE WRITE rather than eight.
	ioBlock = 1 << 20
	// unknownCapacity is reported by statfs when the store cannot say (a
	// total of 0): df shows a large, non-zero free space rather than a full
	// disk, which would make rsync and cp refuse to write.
	unknownCapacity = 1 << 50
)

// filesystem is the state shared by all nodes of one mount.
type filesystem struct {
	store    Store // gate, as a Store
	gate     *gatedStore
	log      *slog.Logger
	readOnly bool
	uid, gid uint32

	segments *segmentsDir

	// ctx ends when serving ends; directory listings run under it.
	ctx    context.Context
	cancel context.CancelFunc

	closing atomic.Bool // Shutdown started: new opens fail with ESHUTDOWN
	discard atomic.Bool // Shutdown's grace is over: unpublished writes are dropped

	mu      sync.Mutex
	handles map[*openFile]struct{} // every open file handle, for cleanup
	writers int                    // handles open for writing
}

func newFilesystem(store Store, opts Options, log *slog.Logger) *filesystem {
	ctx, cancel := context.WithCancel(context.Background())
	gate := &gatedStore{Store: store}
	fsys := &filesystem{
		store:    gate,
		gate:     gate,
		log:      log,
		readOnly: store.ReadOnly(),
		uid:      uint32(os.Getuid()),
		gid:      uint32(os.Getgid()),
		ctx:      ctx,
		cancel:   cancel,
		handles:  make(map[*openFile]struct{}),
	}
	fsys.segments = newSegmentsDir(fsys)
	return fsys
}

// openFile is a file handle: either a pinned version of a segment, read-only,
// or a share of the file's draft.
type openFile struct {
	node   *fileNode
	reader Reader // pinned version; nil when the handle uses a draft
	draft  *draft
	write  bool
	append bool // O_APPEND
	cached bool // reads go through the node's page cache (see fileNode.Open)
	// wroteSeq is the draft change this handle made last: the handle is
	// dirty while the draft has not published that change. failedSeq is
	// wroteSeq when a publish for this handle failed: its close reported
	// the error, so RELEASE does not try again. Guarded by draft.mu.
	wroteSeq, failedSeq uint64
	// writeErr: a change through this handle failed. Its writer was told
	// so; its close reports the error and publishes nothing (see
	// segmentsDir.writeFailed). Guarded by draft.mu.
	writeErr error
	// owners maps each process (thread group) that changed the file
	// through this handle to its last change (a draft sequence number).
	// FUSE tells the descriptors of one handle apart by nothing but the
	// process closing them, so a close publishes only for a process that
	// changed the file (see segmentsDir.flush). Guarded by draft.mu.
	owners map[uint32]uint64
	// lastTid and lastPid cache the last thread-to-process lookup of a
	// change through this handle (one read of /proc per thread, not per
	// write). Guarded by draft.mu.
	lastTid, lastPid uint32
}

// process returns the process making a change through h (see
// callerProcess), with a lookup cache.
func (h *openFile) process(ctx context.Context) uint32 {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Caller.Pid == 0 {
		return 0
	}
	tid := fc.Caller.Pid
	h.draft.mu.RLock()
	cachedTid, pid := h.lastTid, h.lastPid
	h.draft.mu.RUnlock()
	if cachedTid == tid {
		return pid
	}
	pid = threadGroup(tid)
	h.draft.mu.Lock()
	h.lastTid, h.lastPid = tid, pid
	h.draft.mu.Unlock()
	return pid
}

// callerProcess returns the process (thread group id) making the request,
// or 0 when it cannot be told (a process in another pid namespace).
func callerProcess(ctx context.Context) uint32 {
	fc, ok := ctx.(*fuse.Context)
	if !ok || fc.Caller.Pid == 0 {
		return 0
	}
	return threadGroup(fc.Caller.Pid)
}

// threadGroup maps a thread id, which is what the kernel sends, to its
// process: a multi-threaded program writes from one thread and closes
// from another.
func threadGroup(tid uint32) uint32 {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(tid), 10) + "/status")
	if err != nil {
		return tid
	}
	_, rest, ok := strings.Cut(string(b), "\nTgid:")
	if !ok {
		return tid
	}
	line, _, _ := strings.Cut(rest, "\n")
	tgid, err := strconv.ParseUint(strings.TrimSpace(line), 10, 32)
	if err != nil || tgid == 0 {
		return tid
	}
	return uint32(tgid)
}

// dirty reports whether this handle changed the draft since it was last
// published, or failed to.
func (h *openFile) dirty() bool {
	if h.draft == nil || !h.write {
		return false
	}
	h.draft.mu.RLock()
	defer h.draft.mu.RUnlock()
	return h.wroteSeq > h.draft.pubSeq || h.writeErr != nil
}

// failed records that a change through this handle failed.
func (h *openFile) failed(err error) {
	h.draft.mu.Lock()
	if h.writeErr == nil {
		h.writeErr = err
	}
	h.draft.mu.Unlock()
}

// failure returns the first error of a change through this handle.
func (h *openFile) failure() error {
	h.draft.mu.RLock()
	defer h.draft.mu.RUnlock()
	return h.writeErr
}

// changedBy reports whether process pid changed the file through this
// handle since the last publish (true when pid is unknown, 0).
func (h *openFile) changedBy(pid uint32) bool {
	h.draft.mu.RLock()
	defer h.draft.mu.RUnlock()
	if pid == 0 || h.writeErr != nil {
		return true
	}
	seq, ok := h.owners[pid]
	return ok && seq > h.draft.pubSeq
}

// publishFailed records that publishing this handle's changes failed.
func (h *openFile) publishFailed() {
	h.draft.mu.Lock()
	h.failedSeq = h.wroteSeq
	h.draft.mu.Unlock()
}

// retryable reports whether the handle made changes since a publish of its
// changes failed (or none failed).
func (h *openFile) retryable() bool {
	h.draft.mu.RLock()
	defer h.draft.mu.RUnlock()
	return h.wroteSeq > h.failedSeq
}

// wrote records a change this handle made for process pid.
func (h *openFile) wrote(seq uint64, pid uint32) {
	h.draft.mu.Lock()
	defer h.draft.mu.Unlock()
	h.wroteLocked(seq, pid)
}

func (h *openFile) wroteLocked(seq uint64, pid uint32) {
	h.wroteSeq = max(h.wroteSeq, seq)
	if pid != 0 {
		if h.owners == nil {
			h.owners = make(map[uint32]uint64, 1)
		}
		h.owners[pid] = max(h.owners[pid], seq)
	}
}

func (fsys *filesystem) addHandle(h *openFile) {
	if h.write {
		h.draft.addWriter(h)
	}
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	fsys.handles[h] = struct{}{}
	if h.write {
		fsys.writers++
	}
}

func (fsys *filesystem) hasHandle(h *openFile) bool {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	_, ok := fsys.handles[h]
	return ok
}

// removeHandle forgets h and reports whether it was still registered
// (cleanup at unmount may have closed it already).
func (fsys *filesystem) removeHandle(h *openFile) bool {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if _, ok := fsys.handles[h]; !ok {
		return false
	}
	delete(fsys.handles, h)
	if h.write {
		fsys.writers--
		h.draft.removeWriter(h)
	}
	return true
}

func (fsys *filesystem) openWriters() int {
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	return fsys.writers
}

// cleanup runs once serving has ended (or Shutdown gave up waiting for it):
// no store call is made after it returns, and the pinned versions and spools
// of handles still open are closed, since the kernel will send no RELEASE
// for them.
func (fsys *filesystem) cleanup() {
	fsys.cancel() // ends directory listings
	fsys.gate.close()
	fsys.mu.Lock()
	handles := fsys.handles
	fsys.handles = make(map[*openFile]struct{})
	fsys.writers = 0
	fsys.mu.Unlock()
	for h := range handles {
		if h.reader != nil {
			h.reader.Close()
		}
		if h.draft != nil {
			// Also the drafts no longer bound to a name (files removed
			// while open), which closeAll does not see. Idempotent.
			h.draft.close()
		}
	}
	fsys.segments.closeAll()
}

// fileAttr describes a regular file.
func (fsys *filesystem) fileAttr(out *fuse.Attr, size int64, mtime time.Time, nlink uint32) {
	out.Mode = syscall.S_IFREG | fileMode
	out.Size = uint64(size)
	out.Blocks = (uint64(size) + 511) / 512
	out.Blksize = ioBlock
	out.Nlink = nlink
	out.Owner = fuse.Owner{Uid: fsys.uid, Gid: fsys.gid}
	// Atime is not tracked; ctime follows mtime.
	out.SetTimes(&mtime, &mtime, &mtime)
}

// dirAttr describes one of the two directories.
func (fsys *filesystem) dirAttr(out *fuse.Attr, st *dirState) {
	mode, mtime := st.get()
	out.Mode = syscall.S_IFDIR | mode
	out.Nlink = 2
	out.Size = statfsBlock
	out.Blocks = statfsBlock / 512
	out.Blksize = statfsBlock
	out.Owner = fuse.Owner{Uid: fsys.uid, Gid: fsys.gid}
	out.SetTimes(&mtime, &mtime, &mtime)
}

// statfs reports the store's capacity so that df shows real numbers. Free
// space is never reported as zero: copying tools refuse to start on a full
// file system, and a store that cannot tell (total 0) is not full.
func (fsys *filesystem) statfs(out *fuse.StatfsOut) syscall.Errno {
	total, free, err := fsys.store.Space()
	if err != nil {
		fsys.fail("statfs", "", err)
		total, free = 0, 0
	}
	if total == 0 {
		total, free = unknownCapacity, unknownCapacity
	}
	if free > total {
		total = free
	}
	*out = fuse.StatfsOut{
		Blocks:  total / statfsBlock,
		Bfree:   max(free/statfsBlock, 1),
		Bavail:  max(free/statfsBlock, 1),
		Files:   1 << 32,
		Ffree:   1 << 32,
		Bsize:   statfsBlock,
		Frsize:  statfsBlock,
		NameLen: 255,
	}
	return 0
}

// dirState is what a directory remembers about itself for the life of the
// mount: chmod and utimes on the directories are accepted (rsync -a and tar
// set them on the destination) and shown back, so a second rsync finds
// nothing to do; they are not stored.
type dirState struct {
	mu    sync.Mutex
	mode  uint32
	mtime time.Time
}

func (st *dirState) get() (uint32, time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.mode, st.mtime
}

// setattr applies a chmod or utimes; everything else is ignored.
func (st *dirState) setattr(in *fuse.SetAttrIn) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if mode, ok := in.GetMode(); ok {
		st.mode = mode & 0o7777
	}
	if mtime, ok := in.GetMTime(); ok {
		st.mtime = mtime
	}
}

// modified records that an entry was added or removed.
func (st *dirState) modified() {
	st.mu.Lock()
	st.mtime = time.Now()
	st.mu.Unlock()
}
