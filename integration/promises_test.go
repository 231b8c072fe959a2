package integration

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/backendtest"
)

// What the mount promises readers and writers (issue 16), through the real
// binary over the tiered store (hot bbolt file, cold MinIO).

// readReply is fdctl's reply to a read that got exactly b.
func readReply(b []byte) string {
	s := sha256.Sum256(b)
	return fmt.Sprintf("ok %d %s", len(b), hex.EncodeToString(s[:]))
}

// TestPinnedReaderThroughMount: a reader that has read 1 MiB of a 4 MiB
// version reads the remaining 3 MiB of it after the segment was replaced:
// overwritten in place with O_TRUNC (hot and archived segments), or put
// through the control socket (seen by the kernel once its one-second
// attribute timeout passed). Other readers meanwhile open and read as
// usual, and a new open reads the new version.
func TestPinnedReaderThroughMount(t *testing.T) {
	e := newEnv(t, "")
	m := e.mount()
	v1 := backendtest.RandomBytes(160, 4<<20)
	src := mustWriteTemp(t, e.dir, v1)
	for _, tc := range []struct {
		name    string
		id      uint64
		archive bool
		replace func(path string, id uint64)
	}{
		{"hot, O_TRUNC through the mount", 160, false, func(path string, _ uint64) {
			sh(t, m.Segs(), fmt.Sprintf("printf new > %s", path))
		}},
		{"archived, O_TRUNC through the mount", 161, true, func(path string, _ uint64) {
			sh(t, m.Segs(), fmt.Sprintf("printf new > %s", path))
		}},
		{"put through the socket", 162, false, func(path string, id uint64) {
			e.mustRun(strings.NewReader("new"), "put", fmt.Sprint(id))
			time.Sleep(1200 * time.Millisecond) // the kernel's entry and attribute timeouts (1 s)
			if got := strings.TrimSpace(sh(t, m.Segs(), "stat -c %s "+path)); got != "3" {
				t.Fatalf("stat after the put: size %s, want 3", got)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := m.path(tc.id)
			sh(t, m.Segs(), fmt.Sprintf("cp %s %s", src, path))
			if tc.archive {
				e.mustRun(nil, "archive", fmt.Sprint(tc.id))
			}
			c := startFdctl(t)
			c.must("open r " + path + " rdonly")
			if got, want := c.do("read r 1048576"), readReply(v1[:1<<20]); got != want {
				t.Fatalf("first MiB: %s, want %s", got, want)
			}
			// Another reader of the same version meanwhile.
			sh(t, m.Segs(), fmt.Sprintf("cmp %s %s", src, path))
			tc.replace(path, tc.id)
			if got, want := c.do("read r 8388608"), readReply(v1[1<<20:]); got != want {
				t.Fatalf("rest of v1: %s, want %s (3 MiB of v1)", got, want)
			}
			c.must("close r")
			if got := sh(t, m.Segs(), "cat "+path); got != "new" {
				t.Fatalf("a new open reads %q", got)
			}
		})
	}
}

// TestChildExitDoesNotPublishThroughMount: in { printf header; /bin/true;
// printf footer; } > f the exit of /bin/true, which inherited the
// descriptor, stores nothing; the group's end stores both.
func TestChildExitDoesNotPublishThroughMount(t *testing.T) {
	e := newEnv(t, "")
	m := e.mount()
	cmd := exec.Command("bash", "-c", `{ printf 'header;'; /bin/true; sh -c 'echo mid >&3'; read x; printf footer; } 3>&1 >"$1"; echo done`, "bash", m.path(163))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "mid" {
		t.Fatalf("shell said %q", lines.Text())
	}
	if r := e.run(nil, "get", "163"); r.code == 0 && r.stdout != "" {
		t.Fatalf("after the child's exit the store holds %q, want nothing or the empty creation", r.stdout)
	}
	in.Write([]byte("go\n"))
	if !lines.Scan() || lines.Text() != "done" {
		t.Fatalf("shell said %q", lines.Text())
	}
	if got := e.mustRun(nil, "get", "163"); got != "header;footer" {
		t.Fatalf("stored %q, want %q", got, "header;footer")
	}
}

// mustWriteTemp writes data to a new file in dir.
func mustWriteTemp(t *testing.T, dir string, data []byte) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "data")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}
