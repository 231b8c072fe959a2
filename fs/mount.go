package fs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/scribefs/scribefs/segment"
)

// Options configure a mount. The zero value is a private, read-write mount
// with one-second kernel caches.
type Options struct {
	// AllowOther lets users other than the one mounting access the files
	// (fuse option allow_other; non-root users need user_allow_other in
	// /etc/fuse.conf). Permissions are then enforced by the kernel from the
	// modes shown (default_permissions, always set): segments are 0644.
	AllowOther bool
	// Debug logs every FUSE request and reply (at info level, so that the
	// trace shows whatever the logger's level).
	Debug bool
	// EntryTimeout and AttrTimeout are how long the kernel may cache a name
	// lookup and a file's attributes without asking again. Zero means the
	// default of one second; a negative value disables caching.
	//
	// Caching matters: every path walk and stat otherwise becomes a round
	// trip to this process (measured: a warm 1 GiB cat took 0.73 s with zero
	// timeouts and 0.15 s with these). Changes made through this mount are
	// always seen at once, because the kernel learns of them from the
	// replies; the timeouts only bound how long a change made to the store
	// behind the mount's back (another host, a tier moving data) can go
	// unnoticed.
	EntryTimeout, AttrTimeout time.Duration
	// Logger receives warnings about failed operations (with the operation
	// and segment id) and, with Debug, the request trace. Nil discards.
	Logger *slog.Logger
}

const (
	defaultTimeout = time.Second
	// maxRequest is MaxWrite and MaxReadAhead: with 1 MiB requests a
	// sequential copy needs an eighth of the round trips of the 128 KiB
	// default. The kernel caps both at its own limits (max_pages_limit).
	maxRequest = 1 << 20
	// abortWait bounds how long Shutdown waits for the kernel to let go of
	// the connection after a forced unmount.
	abortWait = 5 * time.Second
)

func (o Options) timeout(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return defaultTimeout
	case d < 0:
		return 0
	}
	return d
}

// Server is a mounted file system.
type Server struct {
	fsys       *filesystem
	fuse       *fuse.Server
	mountpoint string

	done     chan struct{} // closed when serving ended or Shutdown finished
	doneOnce sync.Once
	cleanup  sync.Once
	stopMu   sync.Mutex // serialises Shutdown
}

// Mount mounts the store at mountpoint and returns once the mount is ready.
//
// The mountpoint must be an existing directory. A mountpoint left behind by a
// scribefs process that was killed (stat fails with "transport endpoint is not
// connected") is lazily unmounted and reused; one that a live FUSE file
// system still serves is refused.
func Mount(mountpoint string, store Store, opts Options) (*Server, error) {
	if store == nil {
		return nil, errors.New("mount: no store")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mnt, err := prepareMountpoint(mountpoint, log)
	if err != nil {
		return nil, err
	}

	fsys := newFilesystem(store, opts, log)
	entryTimeout, attrTimeout := opts.timeout(opts.EntryTimeout), opts.timeout(opts.AttrTimeout)
	mo := fuse.MountOptions{
		FsName:     "scribefs",
		Name:       "scribefs",
		AllowOther: opts.AllowOther,
		// As root, mount(2) directly; go-fuse falls back to fusermount3
		// if that fails, and non-root users always need fusermount3.
		DirectMount:  os.Geteuid() == 0,
		MaxWrite:     maxRequest,
		MaxReadAhead: maxRequest,
		// ENOSYS for every xattr request: the kernel then stops asking.
		// ls -l asks for ACLs of every file; answering each cost 8.7 s
		// instead of 0.46 s for 100,000 entries. setxattr fails with
		// EOPNOTSUPP.
		DisableXAttrs: true,
		// O_TRUNC arrives with OPEN instead of as a separate SETATTR;
		// files open for writing, which bypass the page cache, can still
		// be mmapped shared.
		ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC | fuse.CAP_DIRECT_IO_ALLOW_MMAP,
		// Reads return bytes, never a file descriptor to splice from:
		// trying to splice them only costs a pipe setup per READ.
		DisableSplice: true,
		// The kernel checks permissions against the modes shown, which
		// matters with AllowOther.
		Options: []string{"default_permissions"},
		Debug:   opts.Debug,
		Logger:  slog.NewLogLogger(log.Handler(), slog.LevelInfo),
	}
	if store.ReadOnly() {
		mo.Options = append(mo.Options, "ro")
	}
	gopts := &gofs.Options{
		MountOptions: mo,
		EntryTimeout: &entryTimeout,
		AttrTimeout:  &attrTimeout,
		// Every node gets an explicit inode number (see ino.go); should
		// go-fuse ever number one itself, it lands in its own window.
		FirstAutomaticIno: autoBase,
		RootStableAttr:    &gofs.StableAttr{Ino: rootIno},
		Logger:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	fsrv, err := gofs.Mount(mnt, newRootDir(fsys), gopts)
	if err != nil {
		fsys.cancel()
		return nil, fmt.Errorf("mount %s: %w", mnt, err)
	}
	raiseReadahead(mnt, log)
	s := &Server{fsys: fsys, fuse: fsrv, mountpoint: mnt, done: make(chan struct{})}
	go func() {
		fsrv.Wait()
		s.finish()
	}()
	return s, nil
}

// finish releases everything once serving is over. Idempotent.
func (s *Server) finish() {
	s.cleanup.Do(s.fsys.cleanup)
	s.doneOnce.Do(func() { close(s.done) })
}

// Wait blocks until the file system is unmounted: by Shutdown, or from outside
// (umount, fusermount3 -u).
func (s *Server) Wait() { <-s.done }

// Delete removes segment id exactly as unlink of segments/<id> through the
// mount does, for callers beside the mount (the control socket's rm): under
// the name's lock, so that a file open for writing under that name is
// detached from it and its close never stores it again (its writes go on
// into a file that no longer has a name, as on a local disk), and a file
// still being created disappears. The kernel is told to forget the name.
// Once the mount has ended it returns ErrUnmounted without touching the
// store, and the caller may delete through the store directly: no file is
// open through the mount any more.
func (s *Server) Delete(ctx context.Context, id segment.ID) error {
	d := s.fsys.segments
	if err := d.remove(ctx, id); err != nil {
		return err
	}
	// Not under any lock of ours: the kernel handles the notification
	// under the directory's lock, which a request waiting on us may hold.
	d.NotifyEntry(id.String())
	return nil
}

// Shutdown unmounts gracefully. New opens fail at once (ESHUTDOWN); files
// open for writing get up to grace to be closed, and are published as usual
// when they are; writes still open after that are discarded, never
// published (their close fails with EIO). Then the file system is
// unmounted; if files are still open, it is detached lazily (and the
// connection aborted through fusectl, when that is mounted), the processes
// holding them get EIO, and the store is not used again once Shutdown
// returns.
func (s *Server) Shutdown(grace time.Duration) error {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	select {
	case <-s.done:
		return nil
	default:
	}
	fsys := s.fsys
	fsys.closing.Store(true)
	deadline := time.Now().Add(grace)
	for fsys.openWriters() > 0 && time.Now().Before(deadline) {
		select {
		case <-s.done:
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
	if n := fsys.openWriters(); n > 0 {
		fsys.log.Warn("discarding unpublished writes of files still open", "files", n, "grace", grace)
	}
	// From here on nothing is published: what is still open is dropped.
	fsys.discard.Store(true)

	if err := s.fuse.Unmount(); err == nil {
		<-s.done
		return nil
	}
	// Busy: files are still open. Detach the mount from the namespace and
	// cut the connection so that Wait returns and the store can be closed.
	dev, haveDev := mountDevice(s.mountpoint)
	if err := lazyUnmount(s.mountpoint); err != nil {
		return fmt.Errorf("unmount %s: %w", s.mountpoint, err)
	}
	if haveDev && abortConnection(dev) {
		select {
		case <-s.done:
			return nil
		case <-time.After(abortWait):
		}
	}
	// Processes still hold files open on the detached mount. They get EIO
	// from now on; the store is not used again.
	fsys.log.Warn("files still open after unmount; they fail from now on", "mountpoint", s.mountpoint)
	s.finish()
	return nil
}

// prepareMountpoint checks the mountpoint and clears a dead mount from it.
func prepareMountpoint(path string, log *slog.Logger) (string, error) {
	mnt, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", path, err)
	}
	// Resolve symlinks in the parent only: the mountpoint itself may be a
	// dead mount that cannot be resolved.
	if dir, err := filepath.EvalSymlinks(filepath.Dir(mnt)); err == nil {
		mnt = filepath.Join(dir, filepath.Base(mnt))
	}
	fi, err := os.Stat(mnt)
	dead := errors.Is(err, syscall.ENOTCONN)
	if err == nil && fuseMountedAt(mnt) {
		// stat may have been answered from the kernel's cache; statfs
		// always reaches the server.
		var st syscall.Statfs_t
		serr := syscall.Statfs(mnt, &st)
		if !errors.Is(serr, syscall.ENOTCONN) {
			return "", fmt.Errorf("mountpoint %s is already mounted (a FUSE file system is served there)", mnt)
		}
		dead = true
	}
	if dead {
		log.Warn("mountpoint is a dead FUSE mount; unmounting it", "mountpoint", mnt)
		if uerr := lazyUnmount(mnt); uerr != nil {
			return "", fmt.Errorf("mountpoint %s is a dead FUSE mount (transport endpoint is not connected) and unmounting it failed: %w", mnt, uerr)
		}
		fi, err = os.Stat(mnt)
	}
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return "", fmt.Errorf("mountpoint %s does not exist", mnt)
	case err != nil:
		return "", fmt.Errorf("mountpoint %s: %w", mnt, err)
	case !fi.IsDir():
		return "", fmt.Errorf("mountpoint %s is not a directory", mnt)
	}
	return mnt, nil
}

// fuseMountedAt reports whether a FUSE file system is mounted at mnt.
func fuseMountedAt(mnt string) bool {
	for _, m := range mountEntries() {
		if m.mountPoint == mnt && (m.fsType == "fuse" || strings.HasPrefix(m.fsType, "fuse.")) {
			return true
		}
	}
	return false
}

// lazyUnmount detaches a mount even if it is busy or its server is gone.
func lazyUnmount(mnt string) error {
	err := syscall.Unmount(mnt, syscall.MNT_DETACH)
	if err == nil {
		return nil
	}
	out, ferr := exec.Command("fusermount3", "-uz", mnt).CombinedOutput()
	if ferr != nil {
		return fmt.Errorf("%v; fusermount3 -uz: %v: %s", err, ferr, strings.TrimSpace(string(out)))
	}
	return nil
}

type mountEntry struct {
	mountPoint   string
	fsType       string
	major, minor uint32
}

// mountEntries parses /proc/self/mountinfo.
func mountEntries() []mountEntry {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var all []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		e := mountEntry{mountPoint: unescapeMountinfo(fields[4]), fsType: fields[sep+1]}
		if maj, min, ok := strings.Cut(fields[2], ":"); ok {
			a, _ := strconv.ParseUint(maj, 10, 32)
			b, _ := strconv.ParseUint(min, 10, 32)
			e.major, e.minor = uint32(a), uint32(b)
		}
		all = append(all, e)
	}
	return all
}

// unescapeMountinfo undoes the octal escapes (\040 for a space…) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountDevice returns the device minor number of the FUSE mount at mnt: it
// names the connection in /sys/fs/fuse/connections.
func mountDevice(mnt string) (uint32, bool) {
	var found mountEntry
	ok := false
	for _, m := range mountEntries() {
		if m.mountPoint == mnt && strings.HasPrefix(m.fsType, "fuse") {
			found, ok = m, true // the last one is the top of the stack
		}
	}
	return found.minor, ok
}

// raiseReadahead lifts the kernel's readahead for the mount to maxRequest.
// MaxReadAhead can only lower the 128 KiB the kernel offers at INIT; the
// backing device's read_ahead_kb (root only) is what allows more, so that a
// sequential read of a cold segment costs one request per MiB. Best effort.
func raiseReadahead(mnt string, log *slog.Logger) {
	for _, m := range mountEntries() {
		if m.mountPoint != mnt || !strings.HasPrefix(m.fsType, "fuse") {
			continue
		}
		path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", m.major, m.minor)
		if err := os.WriteFile(path, []byte(strconv.Itoa(maxRequest>>10)), 0); err != nil {
			log.Debug("could not raise readahead", "path", path, "err", err)
		}
	}
}

// abortConnection cuts a FUSE connection through fusectl, if it is mounted:
// every request in flight and to come fails, and the server's loop ends.
func abortConnection(minor uint32) bool {
	path := filepath.Join("/sys/fs/fuse/connections", strconv.FormatUint(uint64(minor), 10), "abort")
	return os.WriteFile(path, []byte("1"), 0) == nil
}
