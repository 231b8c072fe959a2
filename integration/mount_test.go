package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/backendtest"
)

// TestMountTools drives a mount with the tools users point at it.
func TestMountTools(t *testing.T) {
	e := newEnv(t, "")
	m := e.mount()
	segs := m.Segs()
	src := filepath.Join(e.dir, "src")
	os.MkdirAll(src, 0o755)

	// cp of a 200 MB file, compared byte for byte
	big := filepath.Join(src, "200")
	mustWriteFile(t, big, backendtest.RandomBytes(200, 200_000_000))
	sh(t, segs, "cp "+big+" 200 && cmp "+big+" 200")
	if out := sh(t, segs, "stat -c %s 200"); strings.TrimSpace(out) != "200000000" {
		t.Fatalf("stat size %q", out)
	}

	// cat >, >> append, truncate, dd conv=notrunc into the middle
	sh(t, segs, "printf hello > 1 && printf ' world' >> 1")
	if got := sh(t, segs, "cat 1"); got != "hello world" {
		t.Fatalf("after append: %q", got)
	}
	sh(t, segs, "printf XY | dd of=1 bs=1 seek=2 conv=notrunc status=none")
	if got := sh(t, segs, "cat 1"); got != "heXYo world" {
		t.Fatalf("after dd notrunc: %q", got)
	}
	sh(t, segs, "truncate -s 4 1")
	if got := sh(t, segs, "cat 1"); got != "heXY" {
		t.Fatalf("after truncate: %q", got)
	}
	sh(t, segs, "truncate -s 6 1")
	if got := sh(t, segs, "cat 1"); got != "heXY\x00\x00" {
		t.Fatalf("after growing truncate: %q", got)
	}
	// overwrite, mv onto an id, rm
	sh(t, segs, "printf new > 1 && mv 1 2")
	if got := sh(t, segs, "cat 2; ls | sort -n"); got != "new2\n200\n" {
		t.Fatalf("after mv: %q", got)
	}
	// the store sees what the mount did
	if got := e.mustRun(nil, "get", "2"); got != "new" {
		t.Fatalf("scribefs get through the running mount: %q", got)
	}
	sh(t, segs, "rm 2")
	if _, err := os.Stat(m.path(2)); !os.IsNotExist(err) {
		t.Fatalf("after rm: %v", err)
	}
	// names and operations that are refused, with nothing stored
	for _, c := range []struct{ script, want string }{
		{"touch abc", "Invalid argument"},
		{"touch 007", "Invalid argument"},
		{"touch 18446744073709551616", "Invalid argument"},
		{"mkdir 5", "Operation not permitted"},
		{"ln -s 200 6", "Operation not permitted"},
		{"ln 200 7", "Operation not permitted"},
		{"mkfifo 8", "Operation not permitted"},
		{"cat 9", "No such file or directory"},
	} {
		out, err := shErr(segs, c.script)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s: err %v, output %q; want %q", c.script, err, out, c.want)
		}
	}
	if got := sh(t, segs, "ls"); got != "200\n" {
		t.Fatalf("refused operations stored something: %q", got)
	}

	// touch -d sets an mtime that persists
	sh(t, segs, "printf x > 30 && touch -d '2001-02-03 04:05:06 UTC' 30")
	if got := sh(t, segs, "stat -c %Y 30"); strings.TrimSpace(got) != "981173106" {
		t.Fatalf("mtime after touch -d: %q", got)
	}

	// rsync -a in; a second run has nothing to transfer; rsync out matches
	tree := filepath.Join(e.dir, "tree")
	os.MkdirAll(tree, 0o755)
	for i := 100; i < 120; i++ {
		mustWriteFile(t, filepath.Join(tree, strconv.Itoa(i)), backendtest.RandomBytes(int64(i), i*1000))
		os.Chtimes(filepath.Join(tree, strconv.Itoa(i)), time.Unix(1600000000+int64(i), 0), time.Unix(1600000000+int64(i), 0))
	}
	sh(t, e.dir, "rsync -a tree/ "+segs+"/")
	if out := sh(t, e.dir, "rsync -a --itemize-changes tree/ "+segs+"/"); out != "" {
		t.Fatalf("second rsync transferred:\n%s", out)
	}
	back := filepath.Join(e.dir, "back")
	sh(t, e.dir, "rsync -a "+segs+"/ back/ && for f in tree/*; do cmp $f back/$(basename $f); done")
	if got := sh(t, back, "stat -c %Y 105"); strings.TrimSpace(got) != "1600000105" {
		t.Fatalf("rsync out lost mtime: %q", got)
	}

	// tar of the mount, and tar -x into it
	sh(t, e.dir, "tar -C "+segs+" -cf all.tar . && tar -tf all.tar > all.list && grep -qx './105' all.list")
	tarDir := filepath.Join(e.dir, "tarsrc")
	os.MkdirAll(tarDir, 0o755)
	for i := 500; i < 505; i++ {
		mustWriteFile(t, filepath.Join(tarDir, strconv.Itoa(i)), backendtest.RandomBytes(int64(i), 3000+i))
	}
	sh(t, e.dir, "tar -C tarsrc -cf in.tar . && tar -C "+segs+" -xf in.tar && for f in tarsrc/*; do cmp $f "+segs+"/$(basename $f); done")

	// df shows free space
	if out := sh(t, segs, "df --output=avail -B1 . | tail -1"); strings.TrimSpace(out) == "0" {
		t.Fatal("df reports no free space")
	}

	// remount: every segment byte-identical, mtimes kept
	before := sh(t, segs, "ls -l --time-style=+%s . | sort; md5sum * | sort")
	m.unmount()
	m2 := e.mount()
	after := sh(t, m2.Segs(), "ls -l --time-style=+%s . | sort; md5sum * | sort")
	if before != after {
		t.Fatalf("remount changed the tree:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	ino1 := sh(t, m2.Segs(), "stat -c %i 200")
	m2.unmount()
	m3 := e.mount()
	if ino2 := sh(t, m3.Segs(), "stat -c %i 200"); ino1 != ino2 {
		t.Fatalf("inode changed across remount: %s vs %s", ino1, ino2)
	}
}

// TestMountConcurrent: 8 writers and 8 readers at once.
func TestMountConcurrent(t *testing.T) {
	e := newEnv(t, "")
	m := e.mount()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				id := 1000 + w*100 + i
				src := filepath.Join(e.dir, fmt.Sprintf("c%d", id))
				os.WriteFile(src, backendtest.RandomBytes(int64(id), 100_000+w*300_000), 0o644)
				if out, err := shErr(m.Segs(), fmt.Sprintf("cp %s %d && cmp %s %d && cat %d > /dev/null", src, id, src, id, id)); err != nil {
					errs <- fmt.Errorf("writer %d: %v: %s", w, err, out)
					return
				}
			}
		}(w)
	}
	for r := 0; r < 8; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if out, err := shErr(m.Segs(), "ls -l > /dev/null && for f in *; do cat $f > /dev/null 2>&1 || true; done"); err != nil {
					errs <- fmt.Errorf("reader: %v: %s", err, out)
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
	if n := strings.Count(sh(t, m.Segs(), "ls"), "\n"); n != 40 {
		t.Fatalf("%d segments after concurrent writes, want 40", n)
	}
}

// TestSecondHostReadOnly: a second host with its own empty hot tier mounts
// the same bucket read-only and reads archived segments, including a 4 KiB
// range of a large one.
func TestSecondHostReadOnly(t *testing.T) {
	e := newEnv(t, "")
	large := backendtest.RandomBytes(77, 64<<20)
	mustWriteFile(t, filepath.Join(e.dir, "large"), large)
	e.mustRun(nil, "put", "77", filepath.Join(e.dir, "large"))
	e.mustRun(strings.NewReader("small archived"), "put", "78")
	e.mustRun(nil, "archive", "77", "78")

	// host 2: same bucket, its own (empty) hot tier
	h2 := &env{t: t, dir: t.TempDir(), bucket: e.bucket}
	h2.hotPath = filepath.Join(h2.dir, "hot.db")
	cfg, _ := os.ReadFile(e.cfgPath)
	h2.writeConfig(strings.Replace(string(cfg), e.hotPath, h2.hotPath, 1))
	m := h2.mount("--read-only")
	if got := sh(t, m.Segs(), "ls"); got != "77\n78\n" {
		t.Fatalf("read-only host lists %q", got)
	}
	if got := sh(t, m.Segs(), "cat 78"); got != "small archived" {
		t.Fatalf("read-only cat: %q", got)
	}
	off := 50<<20 + 12345
	got := sh(t, m.Segs(), fmt.Sprintf("dd if=77 bs=4096 iflag=skip_bytes,count_bytes skip=%d count=4096 status=none | od -An -tx1 | tr -d ' \\n'", off))
	want := fmt.Sprintf("%x", large[off:off+4096])
	if got != want {
		t.Fatal("4 KiB range read on the read-only host differs")
	}
	sh(t, m.Segs(), "cmp 77 "+filepath.Join(e.dir, "large"))
	for _, script := range []string{"printf x > 79", "rm 78", "mv 78 80", "touch -d 2001-01-01 78", "printf x >> 78"} {
		out, err := shErr(m.Segs(), script)
		if err == nil || !strings.Contains(out, "Read-only file system") {
			t.Errorf("%s on a read-only mount: %v %q", script, err, out)
		}
	}
	if !e.objectExists(78) {
		t.Fatal("read-only mount removed an object")
	}
}

// TestColdOutageIsEIO: with S3 down, a cold read fails with EIO within
// timeout × retries, never ENOENT, never a hang; hot reads and writes go on.
func TestColdOutageIsEIO(t *testing.T) {
	e := newEnv(t, "")
	e.mustRun(strings.NewReader("cold bytes"), "put", "5")
	e.mustRun(nil, "archive", "5")
	e.mustRun(strings.NewReader("hot bytes"), "put", "6")
	m := e.mount()
	minio.Stop()
	restarted := false
	defer func() {
		// A second Restart would start another server on the port the
		// first one holds, and a later Stop would kill only that one.
		if !restarted {
			if err := minio.Restart(); err != nil {
				t.Fatalf("restarting MinIO: %v", err)
			}
		}
	}()
	start := time.Now()
	out, err := shErr(m.Segs(), "cat 5")
	took := time.Since(start)
	if err == nil || !strings.Contains(out, "Input/output error") {
		t.Fatalf("cold read during outage: %v %q", err, out)
	}
	// timeout_secs = 5, max_retries = 2: connection refused fails fast, but
	// the bound is what is promised.
	if took > 3*5*time.Second+5*time.Second {
		t.Fatalf("cold read took %v to fail", took)
	}
	t.Logf("cold read during outage failed with EIO after %v", took.Round(time.Millisecond))
	if got := sh(t, m.Segs(), "cat 6"); got != "hot bytes" {
		t.Fatalf("hot read during outage: %q", got)
	}
	sh(t, m.Segs(), "printf more > 7 && cat 7 >/dev/null")
	if err := minio.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	if got := sh(t, m.Segs(), "cat 5"); got != "cold bytes" {
		t.Fatalf("cold read after outage: %q", got)
	}
}
