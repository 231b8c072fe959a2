package fs

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// These tests pin down when a change made through the mount is published,
// with descriptors held by ../testdata/fdctl.py so that each step's system
// call and its result are explicit.

// fdctl is a process holding descriptors on the mount (testdata/fdctl.py).
type fdctl struct{ *heldShell }

func startFdctl(t *testing.T) fdctl {
	t.Helper()
	return fdctl{startCmd(t, "python3", "../testdata/fdctl.py")}
}

// do runs one command and returns its reply: "ok" or "err ENAME".
func (c fdctl) do(cmd string) string {
	c.t.Helper()
	c.send(cmd)
	select {
	case line, ok := <-c.lines:
		if !ok {
			c.t.Fatalf("fdctl ended during %q", cmd)
		}
		return line
	case <-time.After(20 * time.Second):
		c.t.Fatalf("fdctl: no reply to %q", cmd)
	}
	return ""
}

// must runs commands that must succeed.
func (c fdctl) must(cmds ...string) {
	c.t.Helper()
	for _, cmd := range cmds {
		if got := c.do(cmd); got != "ok" {
			c.t.Fatalf("fdctl %q: %s", cmd, got)
		}
	}
}

// TestFsyncPublishesOtherDescriptorsWrites: fsync of any descriptor of a
// file publishes what was written through another, whichever way the
// descriptor was opened; so does `sync FILE` from another process. The
// writer's descriptor stays open throughout, so nothing else publishes.
func TestFsyncPublishesOtherDescriptorsWrites(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	for i, tc := range []struct {
		name     string
		existing bool   // the segment exists before
		fd2      string // flags of the second descriptor; "" for sync FILE
		early    bool   // fd2 is opened before the write
	}{
		{"new file, second writer", false, "wronly", false},
		{"new file, read-only after the write", false, "rdonly", false},
		{"existing, read-only before the write", true, "rdonly", true},
		{"existing, second writer before the write", true, "wronly,append", true},
		{"existing, sync FILE", true, "", false},
		{"new file, sync FILE", false, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := segment.ID(100 + i)
			path := m.path(id.String())
			flags := "wronly,creat,trunc"
			if tc.existing {
				m.store.put(id, []byte("old"), time.Time{})
				flags = "wronly,append"
			}
			c := startFdctl(t)
			if tc.early {
				c.must("open fd2 " + path + " " + tc.fd2)
			}
			c.must("open fd1 "+path+" "+flags, "write fd1 written via fd1")
			want := "written via fd1"
			if tc.existing {
				want = "old" + want
			}
			if tc.fd2 == "" {
				mustRun(t, "sync", path)
			} else {
				if !tc.early {
					c.must("open fd2 " + path + " " + tc.fd2)
				}
				c.must("fsync fd2")
			}
			mustStored(t, m.store, id, want)
			c.must("close fd1")
			if tc.fd2 != "" {
				c.must("close fd2")
			}
			mustStored(t, m.store, id, want)
		})
	}
}

// TestCloseOfCreateOrTruncPublishes: a file only created, or only emptied
// with O_TRUNC, is stored by the time close returns, even while a duplicate
// descriptor keeps it open (so no RELEASE follows the close).
func TestCloseOfCreateOrTruncPublishes(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(201, []byte("old contents"), time.Time{})
	for _, tc := range []struct {
		name  string
		id    segment.ID
		flags string
	}{
		{"create only", 200, "wronly,creat"},
		{"O_TRUNC only", 201, "wronly,trunc"},
		{"O_CREAT|O_TRUNC of an existing segment", 201, "wronly,creat,trunc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m.store.put(201, []byte("old contents"), time.Time{})
			c := startFdctl(t)
			c.must("open f "+m.path(tc.id.String())+" "+tc.flags, "dup f g", "close f")
			mustStored(t, m.store, tc.id, "")
			c.must("close g")
		})
	}
	// The same from the shell: touch, and a redirection of nothing.
	mustRun(t, "touch", m.path("202"))
	mustStored(t, m.store, 202, "")
	m.store.put(203, []byte("old"), time.Time{})
	mustSh(t, `: > "$1"`, m.path("203"))
	mustStored(t, m.store, 203, "")
}

// TestCloseReportsPublishFailureOfCreateOrTrunc: when storing a file that
// was only created or emptied fails, close reports it, and the store keeps
// what it had; RELEASE does not try again.
func TestCloseReportsPublishFailureOfCreateOrTrunc(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	m.store.put(211, []byte("kept"), time.Time{})
	for _, tc := range []struct {
		name  string
		id    segment.ID
		flags string
		err   error
		want  string
	}{
		{"create only, no space", 210, "wronly,creat", backend.ErrNoSpace, "err ENOSPC"},
		{"O_TRUNC only, no space", 211, "wronly,trunc", backend.ErrNoSpace, "err ENOSPC"},
		{"O_TRUNC only, read-only store", 211, "wronly,trunc", backend.ErrReadOnly, "err EROFS"},
		{"O_TRUNC only, unavailable", 211, "wronly,creat,trunc", backend.ErrUnavailable, "err EIO"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startFdctl(t)
			m.store.setFailPut(tc.err)
			c.must("open f " + m.path(tc.id.String()) + " " + tc.flags)
			if got := c.do("close f"); got != tc.want {
				t.Fatalf("close = %s, want %s", got, tc.want)
			}
			m.store.setFailPut(nil)
			puts := m.store.Calls("put")
			waitReleased(t, m) // RELEASE, which must not retry
			if n := m.store.Calls("put") - puts; n != 0 {
				t.Fatalf("%d puts after the failed close, want 0", n)
			}
			if tc.id == 210 {
				mustNotStored(t, m.store, 210)
			} else {
				mustStored(t, m.store, 211, "kept")
			}
		})
	}
}

// TestServerDeleteOfOpenFile: Server.Delete (the control socket's rm) of a
// file open for writing does what unlink through the mount does: the
// segment is gone, the writer's further writes and close succeed, and the
// close does not store the file again.
func TestServerDeleteOfOpenFile(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	for i, how := range []string{"unlink through the mount", "Server.Delete"} {
		t.Run(how, func(t *testing.T) {
			for j, flags := range []string{"wronly,append", "wronly,creat,excl"} {
				id := segment.ID(300 + 10*i + j)
				path := m.path(id.String())
				if j == 0 {
					m.store.put(id, []byte("stored"), time.Time{})
				}
				c := startFdctl(t)
				c.must("open w "+path+" "+flags, "write w before")
				if _, err := run(t, "stat", path); err != nil {
					t.Fatal(err) // the kernel knows the name
				}
				if how == "Server.Delete" {
					if err := m.srv.Delete(context.Background(), id); err != nil {
						t.Fatalf("Delete: %v", err)
					}
				} else {
					mustRun(t, "rm", path)
				}
				if _, err := run(t, "stat", path); err == nil || !strings.Contains(err.Error(), "No such file") {
					t.Fatalf("stat after delete: %v", err)
				}
				c.must("write w after", "fsync w", "close w")
				mustNotStored(t, m.store, id)
				if ls := mustRun(t, "ls", m.seg); strings.Contains(ls, id.String()) {
					t.Fatalf("ls after the writer closed: %q", ls)
				}
				// The name is free for a new file.
				mustSh(t, `printf new > "$1"`, path)
				mustStored(t, m.store, id, "new")
			}
		})
	}
	if err := m.srv.Delete(context.Background(), 399); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Delete of a missing segment: %v", err)
	}
}

// waitReleased waits until the kernel has released every handle open for
// writing (RELEASE follows close(2) asynchronously).
func waitReleased(t *testing.T, m *testMount) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for m.srv.fsys.openWriters() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d handles open for writing 5s after close", m.srv.fsys.openWriters())
		}
		time.Sleep(time.Millisecond)
	}
}
