package fs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scribefs/scribefs/segment"
)

// Tests of what the mount promises readers, writers and tools (issue 16),
// each through a real mount driven from other processes.

// sha256Hex is how fdctl's read reports what it read.
func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// readReply is fdctl's reply to a read that got exactly b.
func readReply(b []byte) string { return fmt.Sprintf("ok %d %s", len(b), sha256Hex(b)) }

// pattern returns n bytes that differ from version to version and from
// offset to offset.
func pattern(version byte, n int) []byte {
	b := bytes.Repeat([]byte{0}, n)
	for i := range b {
		b[i] = version + byte(i/4096)
	}
	return b
}

// TestFsyncDirectory: fsync of the mount's directories succeeds (Python's
// atomic-write helpers, Go's dir.Sync(), `sync DIR`); renames and unlinks
// are stored by the time they return, so there is nothing left to do.
func TestFsyncDirectory(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	c := startFdctl(t)
	for _, dir := range []string{m.mnt, m.seg} {
		c.must("open d "+dir+" rdonly", "fsync d", "close d")
		mustRun(t, "sync", dir)
	}
}

// TestDistinctInodeNumbers: ids that used to share an inode number (2^63 and
// 2^64-2^32-4) have numbers of their own, so cp between them works and
// find -samefile tells them apart.
func TestDistinctInodeNumbers(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	a, b := m.path("9223372036854775808"), m.path("18446744069414584316")
	mustSh(t, `printf aaa > "$1" && printf bbb > "$2"`, a, b)
	inos := mustSh(t, `stat -c %i "$1" "$2"`, a, b)
	if l := strings.Fields(inos); len(l) != 2 || l[0] == l[1] {
		t.Fatalf("inode numbers %q", inos)
	}
	mustRun(t, "cp", a, b)
	mustStored(t, m.store, 18446744069414584316, "aaa")
	if same := mustRun(t, "find", m.seg, "-samefile", a); strings.TrimSpace(same) != a {
		t.Fatalf("find -samefile %s: %q", a, same)
	}
}

// TestPinnedReaderReadsToItsEnd: a reader that has read 1 MiB of a 4 MiB
// version reads the remaining 3 MiB of that version, whatever replaced the
// segment meanwhile: an in-place overwrite through the mount (the kernel
// sets its one size per inode to 0 at the writer's O_TRUNC open), a new
// version put into the store from outside, seen once the attributes are
// asked for again, or a rename of a temp file onto it (rsync's way). A
// new open then reads the new version.
func TestPinnedReaderReadsToItsEnd(t *testing.T) {
	v1 := pattern(1, 4<<20)
	for i, tc := range []struct {
		name    string
		opts    Options
		replace func(m *testMount, path string)
	}{
		{"O_TRUNC overwrite through the mount", Options{}, func(m *testMount, path string) {
			mustSh(t, `printf new > "$1"`, path)
		}},
		{"overwrite with a writer held open", Options{}, func(m *testMount, path string) {
			w := startWriter(t, path, "trunc", "new")
			w.send("close")
			w.expect("closed")
		}},
		{"new version put from outside", Options{EntryTimeout: -1, AttrTimeout: -1}, func(m *testMount, path string) {
			m.store.put(segment.ID(500), []byte("new"), time.Time{})
			mustRun(t, "stat", path) // the kernel learns the new size
		}},
		{"new version put from outside, then opened", Options{}, func(m *testMount, path string) {
			m.store.put(segment.ID(500), []byte("new"), time.Time{})
			// Within the entry timeout: the open goes to the reader's
			// inode, which must not take the new version.
			if got := mustRun(t, "cat", path); got != "new" {
				t.Fatalf("open of the new version reads %q", abbreviate(got))
			}
		}},
		{"rename of a temp file (rsync)", Options{}, func(m *testMount, path string) {
			mustSh(t, `printf new > "$1/.tmp" && mv "$1/.tmp" "$2"`, m.seg, path)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustMount(t, newTestStore(t, 1<<30), tc.opts)
			_ = i
			path := m.path("500")
			m.store.put(500, v1, time.Time{})
			c := startFdctl(t)
			c.must("open r " + path + " rdonly")
			if got, want := c.do("read r 1048576"), readReply(v1[:1<<20]); got != want {
				t.Fatalf("first MiB: %s, want %s", got, want)
			}
			tc.replace(m, path)
			mustStored(t, m.store, 500, "new")
			if got, want := c.do("read r 8388608"), readReply(v1[1<<20:]); got != want {
				t.Fatalf("rest of v1: %s, want %s (3 MiB of v1)", got, want)
			}
			c.must("close r")
			if got := mustRun(t, "cat", path); got != "new" {
				t.Fatalf("a new open reads %q, want %q", abbreviate(got), "new")
			}
		})
	}
}

// TestMmapSeesOneVersion: the kernel's page cache never mixes versions.
// A reader of v2 mapping the file does not show v2's bytes to a reader of
// v1; and a reader of v1 refilling the cache after v2 was published does
// not hand v1's pages to a MAP_SHARED writer, which would store them back
// (reverting v2's change).
func TestMmapSeesOneVersion(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	const size = 256 << 10
	v1, v2 := pattern(1, size), pattern(101, size)

	t.Run("reader of v2 maps, reader of v1 reads", func(t *testing.T) {
		path := m.path("510")
		m.store.put(510, v1, time.Time{})
		a, b := startFdctl(t), startFdctl(t)
		a.must("open a " + path + " rdonly")
		if got, want := a.do("read a 4096"), readReply(v1[:4096]); got != want {
			t.Fatalf("v1 first page: %s", got)
		}
		tmp := mustWriteTemp(t, v2)
		mustRun(t, "cp", tmp, path) // v2, same size, through the mount
		b.must("open b "+path+" rdonly", "mmap b mb shared")
		if got, want := b.do(fmt.Sprintf("mread mb 0 %d", size)), readReply(v2); got != want {
			t.Fatalf("mapping of v2: %s, want %s", got, want)
		}
		if got, want := a.do(fmt.Sprintf("read a %d", size)), readReply(v1[4096:]); got != want {
			t.Fatalf("reader of v1 after v2 was mapped: %s, want %s", got, want)
		}
	})

	t.Run("shared writer after a reader of v1 refilled the cache", func(t *testing.T) {
		path := m.path("511")
		m.store.put(511, v1, time.Time{})
		a, w := startFdctl(t), startFdctl(t)
		a.must("open a " + path + " rdonly")
		// v2 changes bytes 100..103 through the mount.
		mustSh(t, `printf BBBB | dd of="$1" bs=1 seek=100 conv=notrunc status=none`, path)
		want := slices.Clone(v1)
		copy(want[100:], "BBBB")
		mustStored(t, m.store, 511, string(want))
		w.must("open w "+path+" rdwr", "mmap w mw shared,write")
		// The reader of v1 reads all of it, refilling the cache.
		if got, exp := a.do(fmt.Sprintf("read a %d", size)), readReply(v1); got != exp {
			t.Fatalf("reader of v1: %s, want %s", got, exp)
		}
		// The writer changes bytes 0..3 of the same page.
		w.must("mwrite mw 0 v3!!", "msync mw", "munmap mw", "close w")
		copy(want, "v3!!")
		if got, _ := m.store.get(511); len(got) > 104 && string(got[100:104]) != "BBBB" {
			t.Fatalf("v3 stored %q at 100..103, where v2 wrote BBBB: v2's change reverted", got[100:104])
		}
		mustStored(t, m.store, 511, string(want))
	})
}

// TestCloseDoesNotPublishOthersUnfinishedWrites: a close publishes the file
// only when no other handle writing it has unpublished changes, and only
// for a process that changed the file through the closed handle: the exit
// of a child that inherited the descriptor (/bin/true in a redirected
// group) publishes nothing, and A's close while B is still writing leaves
// the old version until B closes.
func TestCloseDoesNotPublishOthersUnfinishedWrites(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})

	t.Run("child inheriting the descriptor", func(t *testing.T) {
		// "mid" is said by a child: a builtin redirecting its stdout would
		// make the shell itself close a duplicate of the file, which is
		// the writer's close as far as FUSE can tell.
		h := startSh(t, `{ printf 'header;'; /bin/true; sh -c 'echo mid >&3'; read x; printf footer; } 3>&1 >"$1"; echo done`, m.path("520"))
		h.expect("mid")
		if got, ok := m.store.get(520); ok && len(got) != 0 {
			t.Fatalf("after the child's exit the store holds %q, want nothing or the empty creation", got)
		}
		h.send("go")
		h.expect("done")
		mustStored(t, m.store, 520, "header;footer")
	})

	t.Run("two writers", func(t *testing.T) {
		path := m.path("521")
		m.store.put(521, []byte("old;"), time.Time{})
		a, b := startFdctl(t), startFdctl(t)
		a.must("open a "+path+" wronly,append", "write a A1;")
		b.must("open b "+path+" wronly,append", "write b B1;")
		a.must("close a")
		mustStored(t, m.store, 521, "old;") // B has not finished
		b.must("write b B2;", "close b")
		mustStored(t, m.store, 521, "old;A1;B1;B2;")
	})
}

// TestFailedWriteFailsOnlyItself: one writer's failed write (past
// max_segment_bytes, or ENOSPC in the spool) fails that write only. Another
// writer's close succeeds and stores the file; while the failed writer
// still holds the file open, a new `printf new > f` works; a write crossing
// the limit is a short write, as on other file systems.
func TestFailedWriteFailsOnlyItself(t *testing.T) {
	const limit = 1000
	m := mustMount(t, newTestStore(t, limit), Options{})
	big := strings.Repeat("b", 2000)

	t.Run("past the size limit beside a valid writer", func(t *testing.T) {
		path := m.path("530")
		m.store.put(530, []byte("old;"), time.Time{})
		a, b := startFdctl(t), startFdctl(t)
		a.must("open a "+path+" wronly,append", "write a A;")
		b.must("open b " + path + " wronly,append")
		if got, want := b.do("write b "+big), fmt.Sprintf("ok short %d", limit-len("old;A;")); got != want {
			t.Fatalf("write crossing the limit: %s, want %s", got, want)
		}
		if got := b.do("write b more"); got != "err EFBIG" {
			t.Fatalf("write at the limit: %s, want err EFBIG", got)
		}
		a.must("close a") // A's close is valid: it stores the file as it is
		mustStored(t, m.store, 530, "old;A;"+big[:limit-len("old;A;")])
		if got := b.do("close b"); got != "err EFBIG" {
			t.Fatalf("close of the failed writer: %s, want err EFBIG", got)
		}
	})

	t.Run("the failed writer holds the file open", func(t *testing.T) {
		path := m.path("531")
		m.store.put(531, []byte("old"), time.Time{})
		b := startFdctl(t)
		b.must("open b " + path + " wronly,append")
		b.do("write b " + big)
		if got := b.do("write b more"); got != "err EFBIG" {
			t.Fatalf("write at the limit: %s", got)
		}
		mustSh(t, `printf new > "$1"`, path)
		mustStored(t, m.store, 531, "new")
		mustSh(t, `printf 2 >> "$1"`, path)
		mustStored(t, m.store, 531, "new2")
		if got := b.do("close b"); got != "err EFBIG" {
			t.Fatalf("close of the failed writer: %s", got)
		}
		mustStored(t, m.store, 531, "new2")
	})
}

// TestSpoolFullFailsOnlyThatWrite: ENOSPC in the spool fails the writes that
// hit it, not the file: once space is freed, `printf new > f` works while
// the failed writer still holds the file open.
func TestSpoolFullFailsOnlyThatWrite(t *testing.T) {
	requireFUSE(t)
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run as root (a small tmpfs for the spool)")
		}
		t.Skip("needs root to mount a small tmpfs")
	}
	spool := t.TempDir()
	if err := syscall.Mount("tmpfs", spool, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(spool, syscall.MNT_DETACH) })
	filler := filepath.Join(spool, "filler")
	if err := os.WriteFile(filler, make([]byte, 900<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	m := mustMount(t, newMemStore(spool, 1<<30), Options{})
	path := m.path("532")
	m.store.put(532, []byte("old"), time.Time{})
	b := startFdctl(t)
	b.must("open b " + path + " wronly,append")
	for i := 0; ; i++ {
		got := b.do("write b " + strings.Repeat("x", 64<<10))
		if got == "err ENOSPC" {
			break
		}
		if i > 20 || got != "ok" && !strings.HasPrefix(got, "ok short ") {
			t.Fatalf("write %d into a full spool: %s", i, got)
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	mustSh(t, `printf new > "$1"`, path)
	mustStored(t, m.store, 532, "new")
	if got := b.do("close b"); got != "err ENOSPC" {
		t.Fatalf("close of the failed writer: %s", got)
	}
	mustStored(t, m.store, 532, "new")
}

// TestListingDoesNotPushStaleAttributes: readdirplus describes entries with
// what Store.List returned when the listing began, buffered ahead of the
// reader; an entry changed through the mount since then (overwritten with
// another size, removed) is looked up in full instead, so that stat and
// cat after the listing see the change, and a removed name does not come
// back as a cached entry.
func TestListingDoesNotPushStaleAttributes(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	const n = 1000
	for id := segment.ID(1); id <= n; id++ {
		m.store.put(id, []byte("0123456789"), time.Time{})
	}
	h := startCmd(t, "python3", "-c", `
import os, sys
d = sys.argv[1]
it = os.scandir(d)
next(it)
print("started", flush=True)
sys.stdin.readline()
n = 1 + sum(1 for _ in it)
print("listed %d" % n, flush=True)
bad = []
for i in range(2, 600, 2):
    name = str(i)
    try:
        size = os.stat(os.path.join(d, name)).st_size
        with open(os.path.join(d, name), "rb") as f:
            got = len(f.read())
        if i % 4 == 0 or size != 20 or got != 20:
            bad.append("%s: size %d, read %d" % (name, size, got))
    except FileNotFoundError:
        if i % 4 != 0:
            bad.append(name + ": ENOENT")
print("bad %d %s" % (len(bad), bad[:5]), flush=True)
`, m.seg)
	h.expect("started")
	// Every other one of the first 600 is overwritten with 20 bytes, every
	// fourth removed, while the listing is buffered ahead of the reader.
	mustSh(t, `for i in $(seq 2 2 598); do if [ $((i % 4)) = 0 ]; then rm "$1/$i"; else printf 01234567890123456789 > "$1/$i"; fi; done`, m.seg)
	h.send("go")
	if line := <-h.lines; !strings.HasPrefix(line, "listed ") {
		t.Fatalf("lister said %q", line)
	}
	h.expect("bad 0 []")
}

// seekdirScript lists a directory with readdir(3), remembers telldir after
// five entries, reads on past them (as Samba does, answering one request
// and remembering where the next starts), and on "go" seekdirs back there
// and lists the rest.
const seekdirScript = `
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.opendir.restype = ctypes.c_void_p
libc.readdir.restype = ctypes.c_void_p
libc.readdir.argtypes = [ctypes.c_void_p]
libc.telldir.restype = ctypes.c_long
libc.telldir.argtypes = [ctypes.c_void_p]
libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
d = libc.opendir(sys.argv[1].encode())
def entry():
    p = libc.readdir(d)
    return None if not p else ctypes.string_at(p + 19).decode()
first = [entry() for _ in range(5)]
pos = libc.telldir(d)
ahead = [entry() for _ in range(200)]
print(" ".join(first), flush=True)
sys.stdin.readline()
libc.seekdir(d, pos)
rest = []
while True:
    e = entry()
    if e is None:
        break
    rest.append(e)
print(" ".join(rest), flush=True)
`

// TestSeekdirAfterChanges: the offsets of directory entries are cookies
// derived from the ids, not positions, so telldir/seekdir (Samba, NFS
// re-exports) neither repeat nor skip entries when the directory changed
// in between.
func TestSeekdirAfterChanges(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	var want []string
	// Enough entries that the place remembered is not in the last batch
	// the kernel read (which go-fuse replays without seeking).
	for id := segment.ID(10); id < 1010; id++ {
		m.store.put(id, []byte("x"), time.Time{})
		if id >= 15 {
			want = append(want, id.String())
		}
	}
	h := startCmd(t, "python3", "-c", seekdirScript, m.seg)
	h.expect("10 11 12 13 14")
	// Two entries before the remembered place go, one comes.
	mustRun(t, "rm", m.path("11"), m.path("12"))
	mustSh(t, `printf y > "$1"`, m.path("5"))
	h.send("go")
	h.expect(strings.Join(want, " "))
}

// openSpoolFiles counts this process's descriptors of spool files.
func openSpoolFiles(t *testing.T, spool string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, filepath.Join(spool, spoolPrefix)) {
			n++
		}
	}
	return n
}

// TestShutdownClosesUnlinkedDrafts: at unmount, the spool file of a file
// removed while still open for writing is closed like any other.
func TestShutdownClosesUnlinkedDrafts(t *testing.T) {
	store := newTestStore(t, 1<<30)
	m := mustMount(t, store, Options{})
	c := startFdctl(t)
	c.must("open w "+m.path("540")+" wronly,creat", "write w data")
	mustRun(t, "rm", m.path("540"))
	if n := openSpoolFiles(t, store.SpoolDir()); n != 1 {
		t.Fatalf("%d spool files open while writing, want 1", n)
	}
	if err := m.srv.Shutdown(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	m.srv.Wait()
	if n := openSpoolFiles(t, store.SpoolDir()); n != 0 {
		t.Fatalf("%d spool files still open after unmount", n)
	}
}
