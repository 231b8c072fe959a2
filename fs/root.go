package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// rootDir is the mount's root. Its only entry is the segments directory; it
// is fixed structure, so anything that would change it fails with EPERM
// (EROFS on a read-only mount).
type rootDir struct {
	gofs.Inode
	fsys *filesystem
	st   dirState
}

func newRootDir(fsys *filesystem) *rootDir {
	return &rootDir{fsys: fsys, st: dirState{mode: dirMode, mtime: time.Now()}}
}

// refuse is the answer to every attempt to change the root's structure.
func (r *rootDir) refuse() syscall.Errno {
	if r.fsys.readOnly {
		return syscall.EROFS
	}
	return syscall.EPERM
}

var _ = (gofs.NodeOnAdder)((*rootDir)(nil))

// OnAdd attaches the segments directory; it never goes away, so it is a
// persistent inode and the root needs no Lookup or Readdir of its own.
func (r *rootDir) OnAdd(ctx context.Context) {
	seg := r.NewPersistentInode(ctx, r.fsys.segments, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: segmentsIno})
	r.AddChild("segments", seg, false)
}

var _ = (gofs.NodeGetattrer)((*rootDir)(nil))

func (r *rootDir) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.fsys.dirAttr(&out.Attr, &r.st)
	out.Nlink = 3 // ".", "..", and segments/..
	return 0
}

var _ = (gofs.NodeSetattrer)((*rootDir)(nil))

func (r *rootDir) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if r.fsys.readOnly {
		return syscall.EROFS
	}
	r.st.setattr(in)
	return r.Getattr(ctx, f, out)
}

var _ = (gofs.NodeStatfser)((*rootDir)(nil))

func (r *rootDir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return r.fsys.statfs(out)
}

var _ = (gofs.NodeFsyncer)((*rootDir)(nil))

// Fsync of a directory succeeds: the root never changes, and every change
// to the segments directory (create, rename, unlink) is stored by the time
// it returns. Atomic-write helpers (Python's, Go's dir.Sync(), sync DIR)
// fsync the directory after a rename and fail if it does.
func (r *rootDir) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	return 0
}

var _ = (gofs.NodeCreater)((*rootDir)(nil))

func (r *rootDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, r.refuse()
}

var _ = (gofs.NodeMkdirer)((*rootDir)(nil))

func (r *rootDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, r.refuse()
}

var _ = (gofs.NodeMknoder)((*rootDir)(nil))

func (r *rootDir) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, r.refuse()
}

var _ = (gofs.NodeSymlinker)((*rootDir)(nil))

func (r *rootDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, r.refuse()
}

var _ = (gofs.NodeLinker)((*rootDir)(nil))

func (r *rootDir) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, r.refuse()
}

var _ = (gofs.NodeUnlinker)((*rootDir)(nil))

// Unlink must be refused explicitly: go-fuse's default is to succeed.
func (r *rootDir) Unlink(ctx context.Context, name string) syscall.Errno {
	return r.refuse()
}

var _ = (gofs.NodeRmdirer)((*rootDir)(nil))

func (r *rootDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	return r.refuse()
}

var _ = (gofs.NodeRenamer)((*rootDir)(nil))

func (r *rootDir) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return r.refuse()
}
