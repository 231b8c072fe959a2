package fs

// These tests mount a memStore in the test process and drive the mount only
// through subprocesses (cat, cp, dd, rsync, tar…): the process serving a
// FUSE mount must not access it itself.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/segment"
)

func TestCreateAndRead(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})

	mustSh(t, `printf 'hello world' > "$1"`, m.path("5"))
	if got := mustRun(t, "cat", m.path("5")); got != "hello world" {
		t.Fatalf("cat = %q", got)
	}
	mustStored(t, m.store, 5, "hello world")

	// Several MiB: many WRITE and READ requests, and a size that is not a
	// multiple of anything.
	data := backendtest.RandomBytes(1, 3<<20+17)
	src := mustWriteTemp(t, data)
	mustRun(t, "cp", src, m.path("6"))
	mustRun(t, "cmp", src, m.path("6"))
	mustStored(t, m.store, 6, string(data))

	// touch creates an empty segment.
	mustRun(t, "touch", m.path("7"))
	eventuallyStored(t, m.store, 7, "")

	if got := mustRun(t, "ls", m.seg); got != "5\n6\n7\n" {
		t.Fatalf("ls = %q", got)
	}
}

func TestOverwrite(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(7, []byte("the old contents"), time.Time{})
	puts := m.store.Calls("put")

	mustSh(t, `printf new > "$1"`, m.path("7"))
	mustStored(t, m.store, 7, "new")
	if got := mustRun(t, "cat", m.path("7")); got != "new" {
		t.Fatalf("cat = %q", got)
	}
	// At most two Puts: the shell closes a duplicate of the descriptor
	// right after opening, which publishes the truncation (close(2)
	// returns only once a change is stored), then the new contents.
	if n := m.store.Calls("put") - puts; n > 2 {
		t.Fatalf("%d puts, want at most 2", n)
	}

	src := mustWriteTemp(t, []byte("copied over"))
	mustRun(t, "cp", src, m.path("7"))
	mustStored(t, m.store, 7, "copied over")
}

func TestAppend(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(8, []byte("a\n"), time.Time{})
	mustSh(t, `echo b >> "$1" && echo c >> "$1"`, m.path("8"))
	mustStored(t, m.store, 8, "a\nb\nc\n")

	// Two descriptors appending through the same open file state.
	mustSh(t, `exec 3>>"$1" 4>>"$1"; echo d >&3; echo e >&4; echo f >&3`, m.path("8"))
	mustStored(t, m.store, 8, "a\nb\nc\nd\ne\nf\n")

	// Appending to a new file.
	mustSh(t, `echo x >> "$1"`, m.path("9"))
	mustStored(t, m.store, 9, "x\n")

	// The segment grew behind the mount's back: the kernel's cached size
	// is stale, yet the append lands at the true end.
	m.store.put(10, []byte("a"), time.Time{})
	mustRun(t, "cat", m.path("10"))
	m.store.put(10, []byte("abc"), time.Time{})
	mustSh(t, `echo d >> "$1"`, m.path("10"))
	mustStored(t, m.store, 10, "abcd\n")
}

func TestDDNotruncIntoTheMiddle(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(9, []byte("0123456789"), time.Time{})
	mustSh(t, `printf XY | dd of="$1" bs=1 seek=4 conv=notrunc status=none`, m.path("9"))
	mustStored(t, m.store, 9, "0123XY6789")

	// A big file, patched in the middle: the rest is copied unchanged.
	data := backendtest.RandomBytes(2, 2<<20)
	m.store.put(10, data, time.Time{})
	mustSh(t, `printf PATCH | dd of="$1" bs=1 seek=1000000 conv=notrunc status=none`, m.path("10"))
	want := slices.Clone(data)
	copy(want[1000000:], "PATCH")
	mustStored(t, m.store, 10, string(want))
}

func TestTruncate(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(11, []byte("0123456789"), time.Time{})

	mustRun(t, "truncate", "-s", "20", m.path("11"))
	mustStored(t, m.store, 11, "0123456789"+strings.Repeat("\x00", 10))
	if got := mustRun(t, "stat", "-c", "%s", m.path("11")); got != "20\n" {
		t.Fatalf("size after grow = %q", got)
	}

	mustRun(t, "truncate", "-s", "3", m.path("11"))
	mustStored(t, m.store, 11, "012")
	if got := mustRun(t, "stat", "-c", "%s", m.path("11")); got != "3\n" {
		t.Fatalf("size after shrink = %q", got)
	}

	// truncate(2) by path, without a descriptor (python: os.truncate).
	mustRun(t, "python3", "-c", "import os,sys; os.truncate(sys.argv[1], 1)", m.path("11"))
	mustStored(t, m.store, 11, "0")

	// truncate -s 0 and a size-0 file.
	mustRun(t, "truncate", "-s", "0", m.path("11"))
	eventuallyStored(t, m.store, 11, "")
}

// TestOTruncNotPublishedEarly holds a file open with O_TRUNC: until it is
// closed the store keeps the old version, while the mount shows the file
// being written.
func TestOTruncNotPublishedEarly(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(12, []byte("old"), time.Time{})

	h := startWriter(t, m.path("12"), "trunc", "newer!")
	mustStored(t, m.store, 12, "old")
	// The size of the file being written, from another process.
	if got := mustRun(t, "stat", "-c", "%s", m.path("12")); got != "6\n" {
		t.Fatalf("stat during write = %q, want 6", got)
	}
	if got := mustRun(t, "cat", m.path("12")); got != "newer!" {
		t.Fatalf("cat during write = %q (read-your-writes)", got)
	}
	h.send("close")
	h.expect("closed")
	mustStored(t, m.store, 12, "newer!")
	h.send("exit")
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}

	// An O_TRUNC open closed without writing publishes the empty file.
	mustSh(t, `: > "$1"`, m.path("12"))
	eventuallyStored(t, m.store, 12, "")
}

func TestRename(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})

	// temp → id: how rsync and editors commit.
	mustSh(t, `printf temp > "$1/.5.XXXX" && ls -a "$1" && mv "$1/.5.XXXX" "$1/13"`, m.seg)
	mustStored(t, m.store, 13, "temp")
	if ids := m.store.ids(); !slices.Equal(ids, []segment.ID{13}) {
		t.Fatalf("stored %v, want [13]", ids)
	}

	// id → id
	mustRun(t, "mv", m.path("13"), m.path("14"))
	mustStored(t, m.store, 14, "temp")
	mustNotStored(t, m.store, 13)
	if got := mustRun(t, "cat", m.path("14")); got != "temp" {
		t.Fatalf("cat = %q", got)
	}
	mustFail(t, "No such file", "cat", m.path("13"))

	// id → id replacing an existing segment.
	m.store.put(15, []byte("replaced"), time.Time{})
	mustRun(t, "mv", m.path("14"), m.path("15"))
	mustStored(t, m.store, 15, "temp")
	mustNotStored(t, m.store, 14)

	// id → temp → temp → id: the bytes leave the store and come back.
	mustRun(t, "mv", m.path("15"), m.path(".a"))
	mustNotStored(t, m.store, 15)
	if got := mustRun(t, "cat", m.path(".a")); got != "temp" {
		t.Fatalf("cat .a = %q", got)
	}
	mustRun(t, "mv", m.path(".a"), m.path(".b"))
	mustRun(t, "mv", m.path(".b"), m.path("16"))
	mustStored(t, m.store, 16, "temp")
	if got := mustRun(t, "ls", "-a", m.seg); got != ".\n..\n16\n" && got != "16\n" {
		t.Fatalf("ls -a = %q", got)
	}

	// mv -n onto an existing file does nothing.
	m.store.put(17, []byte("keep"), time.Time{})
	mustRun(t, "mv", "-n", m.path("16"), m.path("17"))
	mustStored(t, m.store, 17, "keep")
	mustStored(t, m.store, 16, "temp")

	// A temp file never renamed is never stored; rm removes it.
	mustSh(t, `printf x > "$1"`, m.path(".scratch"))
	mustRun(t, "rm", m.path(".scratch"))
	if ids := m.store.ids(); !slices.Equal(ids, []segment.ID{16, 17}) {
		t.Fatalf("stored %v", ids)
	}
}

// TestRenamedFileGetsItsOwnIno: a file renamed onto an id keeps its inode
// number while the kernel's entry lasts (POSIX), then shows the id's stable
// number.
func TestRenamedFileGetsItsOwnIno(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{EntryTimeout: 20 * time.Millisecond, AttrTimeout: 20 * time.Millisecond})
	mustSh(t, `printf x > "$1/.20.tmp" && mv "$1/.20.tmp" "$1/20" && printf y > "$1/21" && mv "$1/21" "$1/22"`, m.seg)
	time.Sleep(50 * time.Millisecond)
	got := mustRun(t, "stat", "-c", "%i", m.path("20"), m.path("22"))
	if want := fmt.Sprintf("%d\n%d\n", 20+inoOffset, 22+inoOffset); got != want {
		t.Fatalf("inodes after rename: %q, want %q", got, want)
	}
	mustStored(t, m.store, 20, "x")
	mustStored(t, m.store, 22, "y")
}

// TestListingShowsFilesBeingCreated: a new file that is not stored yet is
// listed in id order among the stored ones.
func TestListingShowsFilesBeingCreated(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(12, []byte("a"), time.Time{})
	m.store.put(14, []byte("b"), time.Time{})
	h := startWriter(t, m.path("13"), "trunc", "new")
	h2 := startWriter(t, m.path(".13.tmp"), "trunc", "tmp")
	if got := mustRun(t, "ls", "-U", "-a", m.seg); got != ".13.tmp\n12\n13\n14\n" {
		t.Fatalf("ls -U = %q", got)
	}
	if got := mustRun(t, "stat", "-c", "%s", m.path("13"), m.path(".13.tmp")); got != "3\n3\n" {
		t.Fatalf("sizes = %q", got)
	}
	mustNotStored(t, m.store, 13)
	h.send("close")
	h.expect("closed")
	h2.send("close")
	h2.expect("closed")
	mustStored(t, m.store, 13, "new")
	if ids := m.store.ids(); !slices.Equal(ids, []segment.ID{12, 13, 14}) {
		t.Fatalf("stored %v", ids)
	}
}

func TestInvalidNames(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(1, []byte("one"), time.Time{})
	for _, name := range []string{"abc", "007", "-1", "18446744073709551616", "1.5", " 1", "+1"} {
		t.Run(name, func(t *testing.T) {
			mustFail(t, "Invalid argument", "touch", m.path(name))
			// (mv reports EINVAL from rename as "cannot move to a
			// subdirectory of itself".)
			mustFail(t, "Invalid argument", "python3", "-c", "import os,sys; os.rename(sys.argv[1], sys.argv[2])", m.path("1"), m.path(name))
			mustFail(t, "No such file", "cat", m.path(name))
		})
	}
	if ids := m.store.ids(); !slices.Equal(ids, []segment.ID{1}) {
		t.Fatalf("stored %v, want [1]", ids)
	}
	mustStored(t, m.store, 1, "one")
}

func TestRefusedOperations(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(1, []byte("one"), time.Time{})
	const eperm = "Operation not permitted"
	for _, tc := range []struct {
		name string
		cmd  []string
		want string
	}{
		{"mkdir", []string{"mkdir", m.path("2")}, eperm},
		{"symlink", []string{"ln", "-s", "1", m.path("3")}, eperm},
		{"hardlink", []string{"ln", m.path("1"), m.path("4")}, eperm},
		{"mkfifo", []string{"mkfifo", m.path("5")}, eperm},
		{"mknod", []string{"mknod", m.path("6"), "c", "1", "3"}, eperm},
		{"create in root", []string{"touch", filepath.Join(m.mnt, "x")}, eperm},
		{"mkdir in root", []string{"mkdir", filepath.Join(m.mnt, "d")}, eperm},
		{"rmdir segments", []string{"rmdir", m.seg}, eperm},
		{"rename segments", []string{"mv", m.seg, filepath.Join(m.mnt, "s")}, eperm},
		{"move to root", []string{"mv", m.path("1"), filepath.Join(m.mnt, "1")}, eperm},
		{"missing", []string{"cat", m.path("99")}, "No such file"},
		{"rm missing", []string{"rm", m.path("99")}, "No such file"},
		{"setxattr", []string{"python3", "-c", "import os,sys; os.setxattr(sys.argv[1], 'user.x', b'1')", m.path("1")}, "Operation not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustFail(t, tc.want, tc.cmd[0], tc.cmd[1:]...)
		})
	}
	if ids := m.store.ids(); !slices.Equal(ids, []segment.ID{1}) {
		t.Fatalf("stored %v, want [1]", ids)
	}
	mustStored(t, m.store, 1, "one")
	if got := mustRun(t, "ls", "-a", m.mnt); got != "segments\n" && got != ".\n..\nsegments\n" {
		t.Fatalf("ls root = %q", got)
	}
	// getxattr and listxattr: not supported, answered by the kernel.
	out := mustRun(t, "python3", "-c", `
import os, sys
for f in (lambda: os.getxattr(sys.argv[1], 'user.x'), lambda: os.listxattr(sys.argv[1])):
    try:
        print(f())
    except OSError as e:
        print(e.errno)`, m.path("1"))
	if out != "95\n95\n" {
		t.Fatalf("getxattr, listxattr: %q, want EOPNOTSUPP twice", out)
	}
}

func TestTooLarge(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1000), Options{})

	mustFail(t, "File too large", "dd", "if=/dev/zero", "of="+m.path("30"), "bs=2000", "count=1", "status=none")
	mustNotStored(t, m.store, 30)
	mustFail(t, "No such file", "stat", m.path("30"))

	mustRun(t, "dd", "if=/dev/zero", "of="+m.path("31"), "bs=990", "count=1", "status=none")
	mustStored(t, m.store, 31, strings.Repeat("\x00", 990))
	mustFail(t, "File too large", "sh", "-c", `printf 0123456789abcdef | dd of="$1" oflag=append conv=notrunc status=none`, "sh", m.path("31"))
	mustStored(t, m.store, 31, strings.Repeat("\x00", 990))
	mustFail(t, "File too large", "truncate", "-s", "1001", m.path("31"))
	mustStored(t, m.store, 31, strings.Repeat("\x00", 990))

	// Exactly the limit is fine.
	mustRun(t, "truncate", "-s", "1000", m.path("31"))
	mustStored(t, m.store, 31, strings.Repeat("\x00", 1000))
	if !strings.Contains(m.log.String(), "errno=\"file too large\"") {
		t.Errorf("EFBIG not logged:\n%s", m.log.String())
	}
}

// TestPutFailureIsReportedByClose: close returns the Put's error, mapped to
// an errno, and nothing changes in the store.
func TestPutFailureIsReportedByClose(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(90, []byte("kept"), time.Time{})
	src := mustWriteTemp(t, []byte("lost"))
	for _, tc := range []struct {
		err  error
		want string
	}{
		{backend.ErrNoSpace, "No space left on device"},
		{backend.ErrUnavailable, "Input/output error"},
		{backend.ErrTooLarge, "File too large"},
		{backend.ErrPermission, "Permission denied"},
	} {
		m.store.setFailPut(tc.err)
		mustFail(t, tc.want, "cp", src, m.path("90"))
		m.store.setFailPut(nil)
		time.Sleep(20 * time.Millisecond) // RELEASE, which must not retry
		mustStored(t, m.store, 90, "kept")
		if !strings.Contains(m.log.String(), "segment=90") {
			t.Errorf("failure not logged with the segment id:\n%s", m.log.String())
		}
	}
}

func TestReadOnly(t *testing.T) {
	store := newTestStore(t, 1<<30)
	store.put(1, []byte("one"), time.Time{})
	store.readOnly = true
	m := mustMount(t, store, Options{})
	if got := mustRun(t, "cat", m.path("1")); got != "one" {
		t.Fatalf("cat = %q", got)
	}
	const erofs = "Read-only file system"
	for _, tc := range []struct {
		name string
		cmd  []string
	}{
		{"create", []string{"touch", m.path("2")}},
		{"overwrite", []string{"sh", "-c", `echo x > "$1"`, "sh", m.path("1")}},
		{"append", []string{"sh", "-c", `echo x >> "$1"`, "sh", m.path("1")}},
		{"truncate", []string{"truncate", "-s", "0", m.path("1")}},
		{"touch", []string{"touch", "-d", "2001-01-01", m.path("1")}},
		{"rm", []string{"rm", m.path("1")}},
		{"mv", []string{"mv", m.path("1"), m.path("3")}},
		{"mkdir", []string{"mkdir", m.path("4")}},
		{"chmod", []string{"chmod", "600", m.path("1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustFail(t, erofs, tc.cmd[0], tc.cmd[1:]...)
		})
	}
	if ids := store.ids(); !slices.Equal(ids, []segment.ID{1}) {
		t.Fatalf("stored %v", ids)
	}
	mustStored(t, store, 1, "one")
	if n := store.Calls("put") + store.Calls("delete") + store.Calls("rename") + store.Calls("setmodtime"); n != 1 {
		t.Fatalf("%d changes reached the store, want only the test's own put", n)
	}
}

// TestReaderPinning opens a reader, then replaces the segment twice (in the
// store behind the mount's back, and through the mount): the reader still
// reads the version it opened.
func TestReaderPinning(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(40, []byte("version-one"), time.Time{})

	h := startSh(t, `exec 3<"$1"; echo ready; read x; cat <&3; echo; read x; cat "$1"`, m.path("40"))
	h.expect("ready")
	m.store.put(40, []byte("version-two"), time.Time{})
	mustSh(t, `printf version-3!! > "$1"`, m.path("40"))
	h.send("read")
	h.expect("version-one")
	// A new open sees the newest version.
	h.send("again")
	h.expect("version-3!!")
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}

	// Deleted while open: the reader still reads it.
	m.store.put(41, []byte("doomed"), time.Time{})
	h = startSh(t, `exec 3<"$1"; echo ready; read x; cat <&3; echo`, m.path("41"))
	h.expect("ready")
	mustRun(t, "rm", m.path("41"))
	mustNotStored(t, m.store, 41)
	h.send("read")
	h.expect("doomed")
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
}

// TestTwoVersionsOpen: a reader of the old version and a reader of the new
// one read at the same time, through the kernel's one page cache per inode;
// each gets its own version, never a mix.
func TestTwoVersionsOpen(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	v1, v2 := backendtest.RandomBytes(21, 4<<20), backendtest.RandomBytes(22, 4<<20)
	m.store.put(42, v1, time.Time{})
	f1, f2 := mustWriteTemp(t, v1), mustWriteTemp(t, v2)
	out := filepath.Join(t.TempDir(), "out")

	// A reads half of v1, then waits.
	a := startCmd(t, "python3", "-c", `
import sys
with open(sys.argv[1], 'rb') as f, open(sys.argv[2], 'wb') as o:
    o.write(f.read(2 << 20))
    print("half", flush=True)
    sys.stdin.readline()
    o.write(f.read())
print("done", flush=True)`, m.path("42"), out)
	a.expect("half")
	// v2 replaces v1 (through the mount); B reads all of v2 twice.
	mustRun(t, "cp", f2, m.path("42"))
	mustRun(t, "cmp", f2, m.path("42"))
	// A reads the rest of v1 while B reads v2 again.
	a.send("go")
	mustRun(t, "cmp", f2, m.path("42"))
	a.expect("done")
	mustRun(t, "cmp", f1, out)
	mustRun(t, "cmp", f2, m.path("42"))
}

func TestInodeNumbers(t *testing.T) {
	store := newTestStore(t, 1<<30)
	ids := []segment.ID{0, 1, 2, 1<<63 - 1, 1 << 63, 1<<64 - 1, 1<<64 - 1<<32 - 4, maxPlain}
	for _, id := range ids {
		store.put(id, []byte(id.String()), time.Time{})
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	inodes := func() map[string]uint64 {
		m := mustMountAt(t, mnt, store, Options{})
		defer m.srv.Shutdown(time.Second)
		out := mustSh(t, `cd "$1" && stat -c '%i %n' . .. segments segments/*`, m.mnt)
		got := make(map[string]uint64)
		for line := range strings.Lines(out) {
			ino, name, _ := strings.Cut(strings.TrimSpace(line), " ")
			n, err := strconv.ParseUint(ino, 10, 64)
			if err != nil {
				t.Fatalf("stat output %q", line)
			}
			got[name] = n
		}
		// ls -i (readdir) agrees with stat (lookup).
		for line := range strings.Lines(mustRun(t, "ls", "-i", m.seg)) {
			ino, name, _ := strings.Cut(strings.TrimSpace(line), " ")
			if want := strconv.FormatUint(got["segments/"+name], 10); ino != want {
				t.Errorf("ls -i %s = %s, stat says %s", name, ino, want)
			}
		}
		return got
	}
	first := inodes()
	if first["."] != rootIno || first["segments"] != segmentsIno {
		t.Errorf("root %d, segments %d", first["."], first["segments"])
	}
	seen := make(map[uint64]string)
	for _, id := range ids {
		name := "segments/" + id.String()
		ino := first[name]
		want, _ := segmentIno(id)
		if ino != want {
			t.Errorf("%s: ino %d, want %d", name, ino, want)
		}
		if other, dup := seen[ino]; dup {
			t.Errorf("%s and %s share ino %d", name, other, ino)
		}
		seen[ino] = name
	}
	// Stable across remounts.
	if second := inodes(); !mapsEqual(first, second) {
		t.Errorf("inode numbers changed across remount:\n%v\n%v", first, second)
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestStatfs(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	out := mustRun(t, "stat", "-f", "-c", "%S %b %f %a %l", m.seg)
	var bsize, blocks, free, avail, namelen uint64
	if _, err := fmt.Sscan(out, &bsize, &blocks, &free, &avail, &namelen); err != nil {
		t.Fatalf("stat -f: %q: %v", out, err)
	}
	if bsize != 4096 || blocks != (10<<30)/4096 || free != (4<<30)/4096 || avail != free || namelen != 255 {
		t.Fatalf("statfs: bsize %d blocks %d free %d avail %d namelen %d", bsize, blocks, free, avail, namelen)
	}
	if df := mustRun(t, "df", "-B1", m.mnt); !strings.Contains(df, "scribefs") || !strings.Contains(df, strconv.Itoa(4<<30)) {
		t.Fatalf("df:\n%s", df)
	}
}

// TestListingWithoutData checks that ls -l, stat and find show sizes and
// mtimes from Store.Stat and Store.List, fetching no data.
func TestListingWithoutData(t *testing.T) {
	store := newTestStore(t, 1<<30)
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	const n = 3000 // more than the listing buffer and many READDIR replies
	for i := range n {
		store.put(segment.ID(i*7), []byte(strings.Repeat("x", i%50)), mtime.Add(time.Duration(i)*time.Second))
	}
	m := mustMount(t, store, Options{})

	out := mustRun(t, "ls", "-l", "--time-style=+%s", m.seg)
	lines := strings.Split(strings.TrimSpace(out), "\n")[1:] // "total …" first
	if len(lines) != n {
		t.Fatalf("ls -l: %d entries, want %d", len(lines), n)
	}
	for _, line := range lines {
		f := strings.Fields(line)
		// -rw-r--r-- 1 root root SIZE MTIME NAME
		id, _ := strconv.Atoi(f[6])
		i := id / 7
		if f[0] != "-rw-r--r--" || f[4] != strconv.Itoa(i%50) || f[5] != strconv.FormatInt(mtime.Unix()+int64(i), 10) {
			t.Fatalf("ls -l line %q", line)
		}
	}
	if got := mustSh(t, `find "$1" -type f | wc -l`, m.seg); strings.TrimSpace(got) != strconv.Itoa(n) {
		t.Fatalf("find: %s", got)
	}
	if got := mustRun(t, "stat", "-c", "%s %Y", m.path("70")); got != fmt.Sprintf("10 %d\n", mtime.Unix()+10) {
		t.Fatalf("stat = %q", got)
	}
	// Ordered by id, as Store.List streams.
	names := strings.Fields(mustRun(t, "ls", "-U", m.seg))
	if !slices.IsSortedFunc(names, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	}) {
		t.Fatalf("readdir order not by id")
	}
	if n := store.Calls("open") + int(store.readAts.Load()); n != 0 {
		t.Fatalf("listing fetched data: %d opens/reads", n)
	}
}

func TestTouchSetsModTime(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(50, []byte("x"), time.Time{})
	mustRun(t, "touch", "-d", "2001-02-03 04:05:06.5 UTC", m.path("50"))
	want := time.Date(2001, 2, 3, 4, 5, 6, 5e8, time.UTC)
	if info, _ := m.store.info(50); !info.ModTime.Equal(want) {
		t.Fatalf("stored mtime %v, want %v", info.ModTime, want)
	}
	if got := mustRun(t, "stat", "-c", "%.9Y", m.path("50")); got != fmt.Sprintf("%d.500000000\n", want.Unix()) {
		t.Fatalf("stat mtime %q", got)
	}
	if m.store.Calls("setmodtime") != 1 {
		t.Fatalf("SetModTime calls: %d", m.store.Calls("setmodtime"))
	}

	// cp -p sets the mtime before closing: it is published with the data.
	src := mustWriteTemp(t, []byte("preserved"))
	old := time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)
	if err := os.Chtimes(src, old, old); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "cp", "-p", src, m.path("51"))
	mustStored(t, m.store, 51, "preserved")
	if info, _ := m.store.info(51); !info.ModTime.Equal(old) {
		t.Fatalf("cp -p: stored mtime %v, want %v", info.ModTime, old)
	}

	// touch on a file open for writing, with changes: remembered, then
	// published.
	h := startWriter(t, m.path("50"), "append", "more")
	mustRun(t, "touch", "-d", "2002-01-01 00:00:00 UTC", m.path("50"))
	h.send("close")
	h.expect("closed")
	mustStored(t, m.store, 50, "xmore")
	if info, _ := m.store.info(50); !info.ModTime.Equal(time.Date(2002, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("stored mtime %v, want 2002-01-01", info.ModTime)
	}
}

func TestRsync(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	src := t.TempDir()
	if err := os.Chmod(src, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for i, size := range []int{0, 1, 100, 4096, 1 << 20, 3<<20 + 5} {
		name := strconv.Itoa(100 + i)
		files[name] = backendtest.RandomBytes(int64(i), size)
		if err := os.WriteFile(filepath.Join(src, name), files[name], 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Date(2020, 1, 1, 0, 0, i, 123456789, time.UTC)
		os.Chtimes(filepath.Join(src, name), mt, mt)
	}
	mustRun(t, "rsync", "-a", src+"/", m.seg+"/")
	for name, data := range files {
		id, _ := segment.ParseID(name)
		mustStored(t, m.store, id, string(data))
	}
	if n := len(m.store.ids()); n != len(files) {
		t.Fatalf("stored %d segments, want %d (temp files stored?)", n, len(files))
	}
	// Nothing left to do the second time.
	if out := mustRun(t, "rsync", "-a", "--itemize-changes", src+"/", m.seg+"/"); out != "" {
		t.Fatalf("second rsync transferred:\n%s", out)
	}
	// And back out.
	back := t.TempDir()
	mustRun(t, "rsync", "-a", m.seg+"/", back+"/")
	mustRun(t, "diff", "-r", src, back)
}

func TestTarRoundTrip(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	src := t.TempDir()
	for i := range 5 {
		data := backendtest.RandomBytes(int64(10+i), i*70000)
		if err := os.WriteFile(filepath.Join(src, strconv.Itoa(200+i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	archive := filepath.Join(t.TempDir(), "a.tar")
	mustRun(t, "tar", "-C", src, "-cf", archive, ".")
	mustRun(t, "tar", "-C", m.seg, "-xf", archive)
	back := t.TempDir()
	mustSh(t, `tar -C "$1" -cf - . | tar -C "$2" -xf -`, m.seg, back)
	mustRun(t, "diff", "-r", src, back)
	// tar restored the mtimes.
	mustRun(t, "sh", "-c", `test "$(stat -c %Y "$1")" = "$(stat -c %Y "$2")"`, "sh", filepath.Join(src, "203"), m.path("203"))
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := backendtest.RandomBytes(int64(100+i), 512<<10+i*1000)
			src := mustWriteTemp(t, data)
			dst := m.path(strconv.Itoa(300 + i))
			for round := range 3 {
				if _, err := sh(t, `cp "$1" "$2" && cmp "$1" "$2" && cat "$2" "$2" > /dev/null`, src, dst); err != nil {
					errs <- fmt.Errorf("writer %d round %d: %w", i, round, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range 8 {
		mustStored(t, m.store, segment.ID(300+i), string(backendtest.RandomBytes(int64(100+i), 512<<10+i*1000)))
	}
}

func TestMmapAndDirectIO(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	data := backendtest.RandomBytes(7, 1<<20+333)
	m.store.put(60, data, time.Time{})
	src := mustWriteTemp(t, data)

	out := filepath.Join(t.TempDir(), "out")
	mustRun(t, "python3", "-c", `
import mmap, sys
with open(sys.argv[1], 'rb') as f, open(sys.argv[2], 'wb') as o:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    o.write(m[:])`, m.path("60"), out)
	mustRun(t, "cmp", src, out)

	mustRun(t, "dd", "if="+m.path("60"), "of="+out, "iflag=direct", "bs=64k", "status=none")
	mustRun(t, "cmp", src, out)

	// Writing through a shared mapping of a file open for writing.
	mustRun(t, "python3", "-c", `
import mmap, sys
with open(sys.argv[1], 'r+b') as f:
    m = mmap.mmap(f.fileno(), 0)
    m[0:4] = b'MMAP'
    m.flush()
    m.close()`, m.path("60"))
	want := slices.Clone(data)
	copy(want, "MMAP")
	mustStored(t, m.store, 60, string(want))
}

// TestPageCache checks that a second read of an unchanged segment is served
// by the kernel's page cache, and that changes are never hidden by it.
func TestPageCache(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{EntryTimeout: 50 * time.Millisecond, AttrTimeout: 50 * time.Millisecond})
	data := backendtest.RandomBytes(8, 2<<20)
	m.store.put(70, data, time.Time{})
	src := mustWriteTemp(t, data)

	mustRun(t, "cmp", src, m.path("70"))
	reads := m.store.readAts.Load()
	mustRun(t, "cmp", src, m.path("70"))
	if n := m.store.readAts.Load() - reads; n != 0 {
		t.Errorf("second read fetched %d times; want it served from the page cache", n)
	}

	// Changed through the mount.
	mustSh(t, `printf changed | dd of="$1" bs=1 seek=100 conv=notrunc status=none`, m.path("70"))
	want := slices.Clone(data)
	copy(want[100:], "changed")
	mustStored(t, m.store, 70, string(want))
	if got := mustRun(t, "head", "-c", "107", m.path("70")); got != string(want[:107]) {
		t.Fatalf("after change through the mount: %q", got[100:])
	}

	// Changed in the store behind the mount's back.
	m.store.put(70, []byte("replaced elsewhere"), time.Time{})
	time.Sleep(100 * time.Millisecond) // the attribute timeout
	if got := mustRun(t, "cat", m.path("70")); got != "replaced elsewhere" {
		t.Fatalf("after change in the store: %q", abbreviate(got))
	}
}

func TestMountOptions(t *testing.T) {
	for _, tc := range []struct {
		opts     Options
		readOnly bool
		want     []string
	}{
		{Options{}, false, []string{"fuse.scribefs", "scribefs", "default_permissions", "max_read=1048576", "rw"}},
		{Options{AllowOther: true}, true, []string{"ro", "allow_other"}},
	} {
		store := newTestStore(t, 1<<30)
		store.readOnly = tc.readOnly
		m := mustMount(t, store, tc.opts)
		var line string
		for l := range strings.Lines(mustRun(t, "cat", "/proc/self/mountinfo")) {
			if strings.Contains(l, " "+m.mnt+" ") {
				line = l
			}
		}
		for _, w := range tc.want {
			if !strings.Contains(line, w) {
				t.Errorf("%+v: mountinfo %q lacks %q", tc.opts, line, w)
			}
		}
		if !tc.opts.AllowOther && strings.Contains(line, "allow_other") {
			t.Errorf("private mount has allow_other: %q", line)
		}
		if os.Geteuid() == 0 {
			f := strings.Fields(line)
			if got := mustRun(t, "cat", "/sys/class/bdi/"+f[2]+"/read_ahead_kb"); got != "1024\n" {
				t.Errorf("read_ahead_kb = %q", got)
			}
		}
	}
}

func TestMountpointChecks(t *testing.T) {
	requireFUSE(t)
	store := newTestStore(t, 1<<30)
	dir := t.TempDir()
	if _, err := Mount(filepath.Join(dir, "missing"), store, Options{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing mountpoint: %v", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := Mount(file, store, Options{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file as mountpoint: %v", err)
	}
	m := mustMount(t, store, Options{})
	if _, err := Mount(m.mnt, store, Options{}); err == nil || !strings.Contains(err.Error(), "already mounted") {
		t.Errorf("second mount: %v", err)
	}
}

// TestDeadMountpointIsReused kills a serving process and mounts over the
// dead mount it left.
func TestDeadMountpointIsReused(t *testing.T) {
	requireFUSE(t)
	dir := t.TempDir()
	srv := startServer(t, dir)
	mnt := filepath.Join(dir, "mnt")
	srv.cmd.Process.Kill()
	srv.cmd.Wait()
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("statfs of the dead mount: %v, want ENOTCONN", err)
	}
	m := mustMountAt(t, mnt, newTestStore(t, 1<<30), Options{})
	m.store.put(1, []byte("alive"), time.Time{})
	if got := mustRun(t, "cat", m.path("1")); got != "alive" {
		t.Fatalf("cat = %q", got)
	}
}

func TestShutdown(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})

	// A writer that closes within the grace period is published; opens
	// during shutdown fail.
	h := startWriter(t, m.path("80"), "trunc", "finished")
	done := make(chan error, 1)
	go func() { done <- m.srv.Shutdown(10 * time.Second) }()
	time.Sleep(100 * time.Millisecond)
	mustFail(t, "Cannot send after transport endpoint shutdown", "touch", m.path("81"))
	h.send("close")
	h.expect("closed")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	m.srv.Wait()
	mustStored(t, m.store, 80, "finished")
	mustNotStored(t, m.store, 81)
	if out := mustRun(t, "cat", "/proc/self/mountinfo"); strings.Contains(out, m.mnt) {
		t.Fatalf("still mounted")
	}
}

func TestShutdownDiscardsOpenWrites(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(82, []byte("old"), time.Time{})
	h := startWriter(t, m.path("82"), "trunc", "abandoned")
	start := time.Now()
	if err := m.srv.Shutdown(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	m.srv.Wait()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	h.send("close")
	h.expect("close failed: 5") // EIO
	h.wait()
	mustStored(t, m.store, 82, "old")
	if out := mustRun(t, "cat", "/proc/self/mountinfo"); strings.Contains(out, m.mnt) {
		t.Fatalf("still mounted")
	}
}

// TestExternalUnmount: umount from outside ends Wait.
func TestExternalUnmount(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	mustRun(t, "umount", m.mnt)
	waited := make(chan struct{})
	go func() { m.srv.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after umount")
	}
}

// streamScript writes argv[2] MiB of a pattern to argv[1] in 1 MiB writes
// and "tail", then runs the steps in argv[3:] ("patch" rewrites bytes at
// 1 MiB, "utime" sets the mtime to 2001-09-09, "hold" prints "held", waits
// for a line on stdin and appends "more"), then closes and prints "closed".
const streamScript = `
import os, sys
path, mib = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(mib):
    os.write(fd, bytes([i % 251]) * (1 << 20))
os.write(fd, b"tail")
for step in sys.argv[3:]:
    if step == "patch":
        os.pwrite(fd, b"PATCH", 1 << 20)
    elif step == "utime":
        os.utime(fd, (1000000000, 1000000000))
    elif step == "hold":
        print("held", flush=True)
        sys.stdin.readline()
        os.write(fd, b"more")
os.close(fd)
print("closed", flush=True)
`

func streamWant(mib int, patch, more bool) string {
	var b strings.Builder
	for i := range mib {
		b.WriteString(strings.Repeat(string([]byte{byte(i % 251)}), 1<<20))
	}
	b.WriteString("tail")
	if more {
		b.WriteString("more")
	}
	s := b.String()
	if patch {
		s = s[:1<<20] + "PATCH" + s[1<<20+5:]
	}
	return s
}

// A file written sequentially is stored while it is written (PutStream),
// invisible until close; a write that is not an append falls back to Put;
// an mtime set before close is the one stored.
func TestStreamedWrites(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})

	h := startCmd(t, "python3", "-c", streamScript, m.path("30"), "20", "hold")
	h.expect("held")
	for deadline := time.Now().Add(5 * time.Second); m.store.Calls("putstream") == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // the stream starts in the background
	}
	if got := m.store.Calls("putstream"); got != 1 {
		t.Fatalf("%d streamed puts while the file is written, want 1", got)
	}
	mustNotStored(t, m.store, 30) // nothing visible before close
	h.send("")
	h.expect("closed")
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	mustStored(t, m.store, 30, streamWant(20, false, true))
	if got := m.store.Calls("put"); got != 1 {
		t.Fatalf("%d versions stored, want 1", got)
	}

	// Rewriting bytes the stream has read abandons it; close stores the
	// whole file with Put.
	mustRun(t, "python3", "-c", streamScript, m.path("31"), "12", "patch")
	mustStored(t, m.store, 31, streamWant(12, true, false))
	if got := m.store.Calls("putstream"); got != 2 {
		t.Fatalf("%d streamed puts, want 2", got)
	}

	// utimes before close (cp -p, tar): the streamed version carries it.
	mustRun(t, "python3", "-c", streamScript, m.path("32"), "10", "utime")
	mustStored(t, m.store, 32, streamWant(10, false, false))
	info, err := m.store.Stat(context.Background(), 32)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.ModTime.Unix(); got != 1000000000 {
		t.Fatalf("mtime %d, want 1000000000", got)
	}
	if got := mustRun(t, "stat", "-c", "%Y %s", m.path("32")); got != fmt.Sprintf("1000000000 %d\n", 10<<20+4) {
		t.Fatalf("stat = %q", got)
	}

	// A file renamed while it is written ends up under the new name only.
	h = startCmd(t, "python3", "-c", streamScript, m.path("33"), "10", "hold")
	h.expect("held")
	mustRun(t, "mv", m.path("33"), m.path("34"))
	h.send("")
	h.expect("closed")
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	mustStored(t, m.store, 34, streamWant(10, false, true))
	mustNotStored(t, m.store, 33)

	// A truncation below what the stream has read abandons it too.
	mustRun(t, "python3", "-c", `
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(12):
    os.write(fd, bytes([i]) * (1 << 20))
os.ftruncate(fd, 3 << 20)
os.lseek(fd, 0, os.SEEK_END)
os.write(fd, b"end")
os.close(fd)
`, m.path("36"))
	var want36 []byte
	for i := range 3 {
		want36 = append(want36, bytes.Repeat([]byte{byte(i)}, 1<<20)...)
	}
	mustStored(t, m.store, 36, string(want36)+"end")

	// A file unlinked, or renamed to a temp name, while it is written is
	// never published under its old name: its stream stops at once, not at
	// close.
	for i, move := range []string{`rm "$1"`, `mv "$1" "$(dirname "$1")/.tmp"`} {
		name := fmt.Sprint(37 + i)
		h = startCmd(t, "python3", "-c", streamScript, m.path(name), "10", "hold")
		h.expect("held")
		waitStreams := func(want int64) {
			t.Helper()
			for deadline := time.Now().Add(5 * time.Second); m.store.streaming.Load() != want; {
				if time.Now().After(deadline) {
					t.Fatalf("%s: %d streamed puts in progress, want %d", move, m.store.streaming.Load(), want)
				}
				time.Sleep(time.Millisecond)
			}
		}
		waitStreams(1)
		mustSh(t, move, m.path(name))
		waitStreams(0)
		h.send("")
		h.expect("closed")
		if err := h.wait(); err != nil {
			t.Fatal(err)
		}
		mustNotStored(t, m.store, segment.ID(37+i))
	}

	// A failing store: close reports it and the old version stays.
	m.store.put(35, []byte("kept"), time.Time{})
	m.store.setFailPut(backend.ErrNoSpace)
	if out, err := run(t, "python3", "-c", streamScript, m.path("35"), "10"); err == nil || !strings.Contains(err.Error(), "No space left on device") {
		t.Fatalf("close of a file the store refused: err %v, output %s", err, out)
	}
	m.store.setFailPut(nil)
	time.Sleep(20 * time.Millisecond)
	mustStored(t, m.store, 35, "kept")
}
