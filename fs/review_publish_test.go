package fs

// Adversarial review of the publish points (fsync of any descriptor, close
// of a file only created or emptied), Server.Delete racing them, and spool
// clean-up: interleavings and inputs the authors' tests do not name.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// gatedPutStore is a memStore whose Put can be held: once armed, the next
// Put reports on entered and waits for release before it stores.
type gatedPutStore struct {
	*memStore
	mu      sync.Mutex
	armed   bool
	entered chan segment.ID
	release chan struct{}
}

func (s *gatedPutStore) arm() {
	s.mu.Lock()
	s.armed = true
	s.mu.Unlock()
}

func (s *gatedPutStore) Put(ctx context.Context, id segment.ID, r io.Reader, size int64, mtime time.Time) (segment.Info, error) {
	s.mu.Lock()
	armed := s.armed
	s.armed = false
	s.mu.Unlock()
	if armed {
		s.entered <- id
		<-s.release
	}
	return s.memStore.Put(ctx, id, r, size, mtime)
}

// mustMountGated mounts a gatedPutStore (driven only from subprocesses).
func mustMountGated(t *testing.T) (*gatedPutStore, *Server, string) {
	t.Helper()
	requireFUSE(t)
	st := &gatedPutStore{memStore: newTestStore(t, 1<<30), entered: make(chan segment.ID, 1), release: make(chan struct{})}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	srv, err := Mount(mnt, st, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(5 * time.Second); err != nil {
			t.Errorf("Shutdown: %v", err)
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		if t.Failed() {
			t.Logf("mount log:\n%s", logs.String())
		}
	})
	return st, srv, filepath.Join(mnt, "segments")
}

func (s *gatedPutStore) waitEntered(t *testing.T) segment.ID {
	t.Helper()
	select {
	case id := <-s.entered:
		return id
	case <-time.After(20 * time.Second):
		t.Fatal("no Put arrived")
		return 0
	}
}

// reply waits for fdctl's reply to a command sent with send.
func (c fdctl) reply() string {
	c.t.Helper()
	select {
	case line, ok := <-c.lines:
		if !ok {
			c.t.Fatal("fdctl ended")
		}
		return line
	case <-time.After(20 * time.Second):
		c.t.Fatal("fdctl: no reply")
	}
	return ""
}

// TestReviewFsyncReadOnlyWhileWriteInFlight: fsync of a read-only
// descriptor publishes one consistent state of the file; a write through
// another descriptor that arrives while the Put runs is not half in it, is
// not lost, and is published by the writer's close.
func TestReviewFsyncReadOnlyWhileWriteInFlight(t *testing.T) {
	st, _, seg := mustMountGated(t)
	const id = 500
	st.put(id, []byte("old"), time.Time{})
	path := filepath.Join(seg, "500")
	w, r := startFdctl(t), startFdctl(t)
	r.must("open r " + path + " rdonly") // a pinned reader, opened before any write
	w.must("open w "+path+" wronly,append", "write w AAA")
	st.arm()
	r.send("fsync r")
	st.waitEntered(t)
	w.send("write w BBB") // waits for the publish (the draft's lock)
	select {
	case line := <-w.lines:
		t.Fatalf("a write went through while the publish held the draft: %q", line)
	case <-time.After(100 * time.Millisecond):
	}
	close(st.release)
	if got := r.reply(); got != "ok" {
		t.Fatalf("fsync r: %s", got)
	}
	if got := w.reply(); got != "ok" {
		t.Fatalf("write w: %s", got)
	}
	mustStored(t, st.memStore, id, "oldAAA")
	w.must("close w")
	mustStored(t, st.memStore, id, "oldAAABBB")
	r.must("close r")
}

// TestReviewTwoWritersOneFsync: two descriptors write one file; fsync of
// one publishes both writers' changes, and the closes that follow store
// nothing more (no second Put of the same state).
func TestReviewTwoWritersOneFsync(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	path := m.path("501")
	a, b := startFdctl(t), startFdctl(t)
	a.must("open a "+path+" wronly,creat", "write a 1111")
	b.must("open b "+path+" rdwr", "write b 22")
	a.must("fsync a")
	mustStored(t, m.store, 501, "2211")
	puts := m.store.Calls("put")
	b.must("close b")
	a.must("close a")
	waitReleased(t, m)
	mustStored(t, m.store, 501, "2211")
	if n := m.store.Calls("put") - puts; n != 0 {
		t.Fatalf("%d more puts after the fsync covered every change", n)
	}
}

// TestReviewFsyncFailureThenClose: a failed fsync (the store refuses the
// Put) leaves the changes pending: the writer's close publishes them once
// the store takes them, and a new file whose fsync failed for lack of
// space is not removed (its writes did not fail).
func TestReviewFsyncFailureThenClose(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	for _, tc := range []struct {
		name, flags string
		id          segment.ID
		existing    bool
	}{
		{"existing", "wronly,append", 510, true},
		{"new file", "wronly,creat,excl", 511, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := m.path(tc.id.String())
			want := "data"
			if tc.existing {
				m.store.put(tc.id, []byte("old"), time.Time{})
				want = "olddata"
			}
			w, r := startFdctl(t), startFdctl(t)
			w.must("open w "+path+" "+tc.flags, "write w data")
			r.must("open r " + path + " rdonly")
			m.store.setFailPut(backend.ErrNoSpace)
			if got := r.do("fsync r"); got != "err ENOSPC" {
				t.Fatalf("fsync with the store full: %s", got)
			}
			m.store.setFailPut(nil)
			if _, err := run(t, "stat", path); err != nil {
				t.Fatalf("the file vanished after a failed fsync: %v", err)
			}
			w.must("close w")
			mustStored(t, m.store, tc.id, want)
			r.must("close r")
		})
	}
}

// TestReviewServerDeleteRacesPublish: Server.Delete (socket rm) arriving
// while a writer's close or fsync is storing the file waits for it, then
// removes the segment; the writer's later writes and close store nothing.
func TestReviewServerDeleteRacesPublish(t *testing.T) {
	for _, via := range []string{"close", "fsync"} {
		t.Run(via, func(t *testing.T) {
			st, srv, seg := mustMountGated(t)
			const id = 520
			st.put(id, []byte("old"), time.Time{})
			path := filepath.Join(seg, "520")
			w := startFdctl(t)
			w.must("open w "+path+" wronly,append", "write w new")
			st.arm()
			w.send(via + " w")
			st.waitEntered(t)
			deleted := make(chan error, 1)
			go func() { deleted <- srv.Delete(context.Background(), id) }()
			select {
			case err := <-deleted:
				t.Fatalf("Delete returned (%v) while the publish was storing the file", err)
			case <-time.After(100 * time.Millisecond):
			}
			close(st.release)
			if got := w.reply(); got != "ok" {
				t.Fatalf("%s: %s", via, got)
			}
			if err := <-deleted; err != nil {
				t.Fatalf("Delete after the publish: %v", err)
			}
			mustNotStored(t, st.memStore, id)
			if via == "fsync" {
				w.must("write w more", "fsync w", "close w")
				mustNotStored(t, st.memStore, id)
			}
		})
	}
}

// TestReviewServerDeleteAfterShutdown: once the mount has ended,
// Server.Delete answers ErrUnmounted and leaves the store alone (the
// socket then deletes through the store itself).
func TestReviewServerDeleteAfterShutdown(t *testing.T) {
	requireFUSE(t)
	st := newTestStore(t, 1<<30)
	mnt := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(mnt, 0o755)
	srv, err := Mount(mnt, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.put(530, []byte("kept"), time.Time{})
	if err := srv.Shutdown(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	srv.Wait()
	if err := srv.Delete(context.Background(), 530); !errors.Is(err, ErrUnmounted) {
		t.Fatalf("Delete after unmount: %v, want ErrUnmounted", err)
	}
	mustStored(t, st, 530, "kept")
}

// TestReviewCleanSpoolNameEdges: names the authors' test does not try.
// Only regular files named exactly the prefix and ASCII digits go; a
// symlink with a spool name (to a file elsewhere) is neither removed nor
// followed.
func TestReviewCleanSpoolNameEdges(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(outside, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	ours := []string{spoolPrefix + "0", spoolPrefix + "000123", spoolPrefix + strings.Repeat("9", 40)}
	others := []string{spoolPrefix + "١٢٣", spoolPrefix + "12 ", spoolPrefix + "+1", spoolPrefix + "1.tmp", ".SCRIBEFS-SPOOL-1", spoolPrefix + "1\n"}
	for _, name := range append(append([]string{}, ours...), others...) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link := spoolPrefix + "77"
	if err := os.Symlink(outside, filepath.Join(dir, link)); err != nil {
		t.Fatal(err)
	}
	n, err := CleanSpool(dir)
	if err != nil || n != len(ours) {
		t.Fatalf("CleanSpool = %d, %v; want %d", n, err, len(ours))
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := append(append([]string{}, others...), link)
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Fatalf("left %q, want %q", left, want)
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "keep" {
		t.Fatalf("the symlink's target: %q %v", b, err)
	}
}

// TestReviewFsyncDuringStream: a file written by appends past the streaming
// threshold is being stored by a background PutStream when fsync arrives
// (through a read-only descriptor, then the writer's): each fsync
// publishes exactly the bytes written so far, appends after it go on, and
// close publishes the whole file.
func TestReviewFsyncDuringStream(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	path := m.path("540")
	w, r := startFdctl(t), startFdctl(t)
	part1 := strings.Repeat("a", streamMin+1<<20)
	part2 := strings.Repeat("b", 1<<20)
	w.must("open w "+path+" wronly,creat,append", "write w "+part1)
	r.must("open r " + path + " rdonly")
	r.must("fsync r")
	mustStored(t, m.store, 540, part1)
	w.must("write w "+part2, "fsync w")
	mustStored(t, m.store, 540, part1+part2)
	w.must("write w end", "close w")
	mustStored(t, m.store, 540, part1+part2+"end")
	r.must("close r")
	if m.store.Calls("putstream") == 0 {
		t.Fatal("no PutStream: the test did not exercise streaming")
	}
}
