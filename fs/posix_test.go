package fs

// POSIX behaviour, after go-fuse's posixtest package. posixtest's functions
// access the mount with os calls from the test process, which must not be
// the process serving it, so the mount is served by a subprocess (this test
// binary re-executed with SCRIBEFS_FS_TEST_SERVE set, see TestMain).
//
// posixtest names its files "file", "dir", "link"…, which are not segment
// ids, so most cases are adapted here with numeric names; the few that use
// numeric names already run unchanged. Decisions, case by case:
//
//	run as is:   FstatDeleted, ReadDirConsistency, Tmpfile (skips itself:
//	             O_TMPFILE is not supported)
//	adapted:     FileBasic (mode is always 0644), FileLarge, TruncateFile,
//	             TruncateNoFile, FdLeak, NlinkZero, ParallelFileOpen,
//	             RenameOverwriteDestExist/DestNoExist (no subdirectory),
//	             ReadDirBasic, DirSeek (in the segments directory), AppendWrite,
//	             DirectIO, Fallocate, FallocateKeepSize, FcntlFlockSetLk,
//	             FcntlFlockLocksFile, LseekHoleSeeksToEOF, LseekEnxioCheck;
//	             plus UnlinkWhileOpen and RenameWhileWriting of our own
//	skipped:     Link, LinkUnlinkRename (a segment has one name: no hard
//	             links), MkdirRmdir, RenameOpenDir, OpenAt (no
//	             subdirectories), SymlinkReadlink, SetattrSymlink,
//	             OpenSymlinkRace (no symlinks), XAttr, XAttrLarge (no xattrs)

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

type servedMount struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	mnt string
}

// startServer serves a fresh memStore at dir/mnt from a subprocess.
func startServer(t *testing.T, dir string) *servedMount {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serveEnv+"="+dir)
	in, out, stderr := mustStartPiped(t, cmd)
	s := &servedMount{cmd: cmd, in: in, mnt: filepath.Join(dir, "mnt")}
	t.Cleanup(func() {
		in.Close()
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		syscall.Unmount(s.mnt, syscall.MNT_DETACH) // in case it crashed
		if t.Failed() {
			t.Logf("server stderr:\n%s", stderr.String())
		}
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("server said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("server: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("server not ready:\n%s", stderr.String())
	}
	return s
}

func TestPosix(t *testing.T) {
	requireFUSE(t)
	srv := startServer(t, t.TempDir())
	seg := filepath.Join(srv.mnt, "segments")
	cases := map[string]func(*testing.T, string){
		"FstatDeleted":       posixtest.FstatDeleted,
		"ReadDirConsistency": posixtest.ReadDirConsistency,
		"Tmpfile":            posixtest.Tmpfile,

		"FileBasic":            posixFileBasic,
		"FileLarge":            posixFileLarge,
		"TruncateFile":         posixTruncateFile,
		"TruncateNoFile":       posixTruncateNoFile,
		"FdLeak":               posixFdLeak,
		"NlinkZero":            posixNlinkZero,
		"ParallelFileOpen":     posixParallelFileOpen,
		"RenameOverwrite":      posixRenameOverwrite,
		"ReadDirBasic":         posixReadDirBasic,
		"DirSeek":              posixDirSeek,
		"AppendWrite":          posixAppendWrite,
		"DirectIO":             posixDirectIO,
		"Fallocate":            posixFallocate,
		"FcntlFlock":           posixFcntlFlock,
		"Lseek":                posixLseek,
		"UnlinkWhileOpen":      posixUnlinkWhileOpen,
		"RenameWhileWriting":   posixRenameWhileWriting,
		"TempFileLifecycle":    posixTempFileLifecycle,
		"WriteThenReadSameFd":  posixWriteThenReadSameFd,
		"ExclusiveCreate":      posixExclusiveCreate,
		"NegativeAndHugeWrite": posixHugeWrite,
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			fn(t, seg)
			// Leave the directory empty for the next case.
			entries, err := os.ReadDir(seg)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if err := os.Remove(filepath.Join(seg, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func posixFileBasic(t *testing.T, mnt string) {
	content := []byte("hello world")
	fn := mnt + "/1"
	mustWrite(t, fn, content)
	if got := mustRead(t, fn); !bytes.Equal(got, content) {
		t.Fatalf("got %q", got)
	}
	f, err := os.Open(fn)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(content)) || fi.Mode() != 0o644 {
		t.Errorf("size %d mode %v", fi.Size(), fi.Mode())
	}
	if err := f.Close(); err != nil {
		t.Error(err)
	}
}

func posixFileLarge(t *testing.T, mnt string) {
	content := make([]byte, 128<<10+123)
	for i := range content {
		content[i] = byte(i * 7 / 3)
	}
	fn := mnt + "/1"
	mustWrite(t, fn, content)
	f, err := os.Open(fn)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, len(content)+1000)
	n, err := io.ReadFull(f, buf)
	if err != io.ErrUnexpectedEOF || !bytes.Equal(buf[:n], content) {
		t.Fatalf("ReadFull: %d, %v", n, err)
	}
	off := 4096 + 7
	buf = make([]byte, 64<<10+5)
	if _, err := f.ReadAt(buf, int64(off)); err != nil || !bytes.Equal(buf, content[off:off+len(buf)]) {
		t.Fatalf("ReadAt: %v", err)
	}
}

func posixTruncateFile(t *testing.T, mnt string) {
	fn := mnt + "/1"
	mustWrite(t, fn, []byte("hello world"))
	f, err := os.OpenFile(fn, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(5); err != nil {
		t.Fatal(err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 5 {
		t.Fatalf("fstat after ftruncate: %v %v", fi, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, fn); string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
}

func posixTruncateNoFile(t *testing.T, mnt string) {
	fn := mnt + "/1"
	mustWrite(t, fn, []byte("hello"))
	if err := syscall.Truncate(fn, 1); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(fn, &st); err != nil || st.Size != 1 {
		t.Fatalf("size %d, %v", st.Size, err)
	}
	if got := mustRead(t, fn); string(got) != "h" {
		t.Fatalf("got %q", got)
	}
}

func posixFdLeak(t *testing.T, mnt string) {
	countFds := func() int {
		entries, _ := os.ReadDir("/proc/self/fd")
		return len(entries)
	}
	fn := mnt + "/1"
	mustWrite(t, fn, []byte("hello world"))
	before := countFds()
	for range 100 {
		mustRead(t, fn)
	}
	if after := countFds(); after > before+15 {
		t.Errorf("%d descriptors before, %d after 100 reads", before, after)
	}
}

func posixNlinkZero(t *testing.T, mnt string) {
	src, dst := mnt+"/1", mnt+"/2"
	mustWrite(t, src, []byte("source"))
	mustWrite(t, dst, []byte("dst"))
	fd, err := syscall.Open(dst, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Nlink != 1 {
		t.Fatalf("before: nlink %d, %v", st.Nlink, err)
	}
	if err := os.Rename(src, dst); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fstat(fd, &st); err != nil || st.Nlink != 0 {
		t.Fatalf("after: nlink %d, %v", st.Nlink, err)
	}
	// The overwritten file is still readable through the descriptor.
	buf := make([]byte, 10)
	n, _ := syscall.Pread(fd, buf, 0)
	if string(buf[:n]) != "dst" {
		t.Fatalf("read %q", buf[:n])
	}
}

func posixParallelFileOpen(t *testing.T, mnt string) {
	fn := mnt + "/1"
	mustWrite(t, fn, []byte("content"))
	const n = 10
	errs := make(chan error, n)
	for i := range n {
		go func() {
			f, err := os.OpenFile(fn, os.O_RDWR, 0)
			if err != nil {
				errs <- err
				return
			}
			var buf [10]byte
			f.Read(buf[:])
			if _, err := f.WriteAt([]byte{byte('0' + i)}, 2); err != nil {
				errs <- err
				return
			}
			errs <- f.Close()
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	got := mustRead(t, fn)
	if len(got) != 7 || string(got[:2]) != "co" || string(got[3:]) != "tent" || got[2] < '0' || got[2] > '9' {
		t.Fatalf("got %q", got)
	}
}

func posixRenameOverwrite(t *testing.T, mnt string) {
	for _, destExists := range []bool{false, true} {
		src, dst := mnt+"/10", mnt+"/11"
		mustWrite(t, src, []byte("hello"))
		if destExists {
			mustWrite(t, dst, []byte("xx"))
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(src, &st); err != nil {
			t.Fatal(err)
		}
		before := st.Ino
		if err := os.Rename(src, dst); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(src); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("source after rename: %v", err)
		}
		if err := syscall.Lstat(dst, &st); err != nil {
			t.Fatal(err)
		}
		if st.Ino != before {
			t.Errorf("destExists=%v: ino %d, want %d (rename keeps the inode)", destExists, st.Ino, before)
		}
		if got := mustRead(t, dst); string(got) != "hello" {
			t.Fatalf("got %q", got)
		}
		os.Remove(dst)
	}
}

func posixReadDirBasic(t *testing.T, mnt string) {
	want := map[string]bool{}
	for i := range 110 {
		nm := fmt.Sprintf("%d", 1000000000000+i*37)
		want[nm] = true
		mustWrite(t, filepath.Join(mnt, nm), []byte("hello"))
		names, err := readNames(mnt)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, n := range names {
			got[n] = true
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("after %d files: got %d entries, want %d", i+1, len(got), len(want))
		}
	}
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// posixDirSeek is xfstests generic/257 as in posixtest, in the segments
// directory: seeking to each entry's offset reads that entry again.
func posixDirSeek(t *testing.T, mnt string) {
	for i := 1; i <= 168; i++ {
		mustWrite(t, fmt.Sprintf("%s/%d", mnt, i), nil)
	}
	fd, err := syscall.Open(mnt, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	all := readDirents(t, fd)
	if len(all) != 168 {
		t.Fatalf("%d entries", len(all))
	}
	buf := make([]byte, 4096)
	for i := len(all) - 1; i >= 0; i-- {
		var off int64
		if i > 0 {
			off = int64(all[i-1].off)
		}
		if _, err := syscall.Seek(fd, off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		n, err := syscall.ReadDirent(fd, buf)
		if err != nil || n == 0 {
			t.Fatalf("entry %d: %d, %v", i, n, err)
		}
		if got := parseDirents(buf[:n]); got[0] != all[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[0], all[i])
		}
	}
}

type dirent struct {
	ino, off uint64
	name     string
}

func readDirents(t *testing.T, fd int) []dirent {
	var all []dirent
	buf := make([]byte, 4096)
	for {
		n, err := syscall.ReadDirent(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return all
		}
		all = append(all, parseDirents(buf[:n])...)
	}
}

// parseDirents decodes linux_dirent64 records.
func parseDirents(b []byte) []dirent {
	var out []dirent
	for len(b) >= 19 {
		reclen := int(b[16]) | int(b[17])<<8
		e := dirent{
			ino: leUint64(b[0:8]),
			off: leUint64(b[8:16]),
		}
		name := b[19:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		e.name = string(name)
		out = append(out, e)
		b = b[reclen:]
	}
	return out
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func posixAppendWrite(t *testing.T, mnt string) {
	fd, err := syscall.Open(mnt+"/1", syscall.O_WRONLY|syscall.O_APPEND|syscall.O_CREAT, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Write(fd, []byte("hello"))
	syscall.Write(fd, []byte("world"))
	if err := syscall.Close(fd); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, mnt+"/1"); string(got) != "helloworld" {
		t.Fatalf("got %q", got)
	}
}

func posixDirectIO(t *testing.T, mnt string) {
	fn := mnt + "/1"
	fd, err := syscall.Open(fn, syscall.O_TRUNC|syscall.O_CREAT|syscall.O_DIRECT|syscall.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("bye"), 4096)
	if n, err := syscall.Write(fd, data); err != nil || n != len(data) {
		t.Fatalf("write: %d, %v", n, err)
	}
	if err := syscall.Close(fd); err != nil {
		t.Fatal(err)
	}
	fd, err = syscall.Open(fn, syscall.O_DIRECT|syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	back := make([]byte, len(data))
	if n, err := syscall.Read(fd, back); err != nil || n != len(data) || !bytes.Equal(back, data) {
		t.Fatalf("read: %d, %v", n, err)
	}
}

func posixFallocate(t *testing.T, mnt string) {
	f, err := os.OpenFile(mnt+"/1", os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 1024, 4096); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(mnt + "/1"); err != nil || fi.Size() != 1024+4096 {
		t.Fatalf("size after fallocate: %v %v", fi, err)
	}
	// FALLOC_FL_KEEP_SIZE leaves the contents alone.
	if _, err := f.WriteAt(bytes.Repeat([]byte{42}, 100), 0); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 1, 50, 10000); err != nil {
		t.Fatal(err)
	}
	if fi, _ := f.Stat(); fi.Size() != 1024+4096 {
		t.Fatalf("KEEP_SIZE changed the size to %d", fi.Size())
	}
	// Punching holes is not supported.
	if err := syscall.Fallocate(int(f.Fd()), 0x2|0x1, 0, 10); !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Fatalf("punch hole: %v", err)
	}
}

// posixFcntlFlock: POSIX locks work (the kernel keeps them locally).
func posixFcntlFlock(t *testing.T, mnt string) {
	fn := mnt + "/1"
	f1, err := os.Create(fn)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Close()
	if err := syscall.FcntlFlock(f1.Fd(), syscall.F_SETLK, &syscall.Flock_t{Type: syscall.F_WRLCK}); err != nil {
		t.Fatal(err)
	}
	f2, err := os.OpenFile(fn, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	const fOFDGetlk = 36
	lk := syscall.Flock_t{}
	if err := syscall.FcntlFlock(f2.Fd(), fOFDGetlk, &lk); err != nil || lk.Type != syscall.F_WRLCK {
		t.Errorf("OFD getlk: %v, type %d", err, lk.Type)
	}
}

func posixLseek(t *testing.T, mnt string) {
	const seekData, seekHole = 3, 4
	fn := mnt + "/1"
	content := bytes.Repeat([]byte("abcxyz\n"), 1024)
	mustWrite(t, fn, content)
	fd, err := syscall.Open(fn, syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if off, err := syscall.Seek(fd, int64(len(content)/2), seekHole); err != nil || off != int64(len(content)) {
		t.Errorf("SEEK_HOLE: %d, %v", off, err)
	}
	if _, err := syscall.Seek(fd, int64(len(content)), seekData); !errors.Is(err, syscall.ENXIO) {
		t.Errorf("SEEK_DATA at EOF: %v", err)
	}
}

// posixUnlinkWhileOpen: a file unlinked while open for reading and for
// writing stays usable through the descriptors and is not stored again.
func posixUnlinkWhileOpen(t *testing.T, mnt string) {
	fn := mnt + "/1"
	mustWrite(t, fn, []byte("contents"))
	r, err := os.Open(fn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(fn, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(fn); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(" more")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fn); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unlinked file came back: %v", err)
	}
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "contents" {
		t.Fatalf("read after unlink: %q, %v", got, err)
	}
}

// posixRenameWhileWriting: writes through a descriptor follow the file to
// its new name.
func posixRenameWhileWriting(t *testing.T, mnt string) {
	w, err := os.Create(mnt + "/1")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("first "))
	if err := os.Rename(mnt+"/1", mnt+"/2"); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("second"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, mnt+"/2"); string(got) != "first second" {
		t.Fatalf("got %q", got)
	}
	if _, err := os.Stat(mnt + "/1"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old name: %v", err)
	}
}

// posixTempFileLifecycle: what rsync does with its temp files.
func posixTempFileLifecycle(t *testing.T, mnt string) {
	tmp := mnt + "/.42.AbCdEf"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("staged"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2010, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(tmp, mt, mt); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		t.Fatal(err)
	}
	names, _ := readNames(mnt)
	if len(names) != 1 || names[0] != ".42.AbCdEf" {
		t.Fatalf("readdir: %v", names)
	}
	if err := os.Rename(tmp, mnt+"/42"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(mnt + "/42")
	if err != nil || !fi.ModTime().Equal(mt) || fi.Size() != 6 {
		t.Fatalf("after rename: %v %v", fi, err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp after rename: %v", err)
	}
}

func posixWriteThenReadSameFd(t *testing.T, mnt string) {
	f, err := os.OpenFile(mnt+"/1", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteAt([]byte("0123456789"), 0)
	f.WriteAt([]byte("ab"), 3)
	buf := make([]byte, 10)
	if n, err := f.ReadAt(buf, 0); n != 10 || string(buf) != "012ab56789" {
		t.Fatalf("read back %q, %v", buf[:n], err)
	}
	if fi, _ := os.Stat(mnt + "/1"); fi.Size() != 10 {
		t.Fatalf("stat while open: %d", fi.Size())
	}
}

func posixExclusiveCreate(t *testing.T, mnt string) {
	mustWrite(t, mnt+"/1", []byte("x"))
	if _, err := os.OpenFile(mnt+"/1", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); !errors.Is(err, os.ErrExist) {
		t.Fatalf("O_EXCL on an existing file: %v", err)
	}
	for _, name := range []string{"x", "01", "-5"} {
		_, err := os.Create(mnt + "/" + name)
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("create %q: %v, want EINVAL", name, err)
		}
	}
}

// posixHugeWrite: writing past the maximum size fails with EFBIG.
func posixHugeWrite(t *testing.T, mnt string) {
	f, err := os.Create(mnt + "/1")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("x"), 1<<30); !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("write past the limit: %v", err)
	}
	if err := f.Close(); !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("close after a failed write: %v, want EFBIG", err)
	}
	if _, err := os.Stat(mnt + "/1"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file stored after failed write: %v", err)
	}
}
