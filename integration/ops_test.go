package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/internal/miniotest"
)

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s %v", resp.Status, err)
	}
	return string(b)
}

// metricValue is the value of the series whose name and labels match
// exactly (labels in Prometheus's sorted order), or -1.
func metricValue(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// TestOpsMetricsLogsStatus: a mount with --metrics-addr and JSON logs,
// driven by cp/cat/rm and an archive, serves /metrics whose key series
// count what happened; every log line is JSON; status shows the lease and
// the backlog; the secret key appears nowhere.
func TestOpsMetricsLogsStatus(t *testing.T) {
	e := newEnv(t, "archive_after_secs = 1\ncheck_interval_secs = 3600\n")
	addr := freeAddr(t)
	m := e.mount("--metrics-addr", addr, "--log-format", "json", "--log-level", "debug")
	src := filepath.Join(e.dir, "src")
	mustWriteFile(t, src, backendtest.RandomBytes(1, 3<<20))
	sh(t, m.Segs(), "cp "+src+" 1 && cp "+src+" 2 && printf small > 3 && cat 1 3 >/dev/null")
	e.mustRun(nil, "archive", "1")
	sh(t, m.Segs(), "cat 1 >/dev/null && rm 3 && ! cat 3 2>/dev/null")
	// The kernel keeps the pages of cat's read; a read through the mount
	// process hits the block cache.
	e.mustRun(nil, "get", "1", filepath.Join(e.dir, "got1"))
	time.Sleep(1500 * time.Millisecond) // segment 2 is now past archive_after: backlog

	body := scrape(t, addr)
	for _, c := range []struct {
		series string
		min    float64
	}{
		{`scribefs_operations_total{op="put",result="ok",tier="hot"}`, 3},
		{`scribefs_operations_total{op="read",result="ok",tier="hot"}`, 1},
		{`scribefs_operations_total{op="read",result="ok",tier="cold"}`, 1},
		{`scribefs_operations_total{op="put",result="ok",tier="cold"}`, 1},
		{`scribefs_operations_total{op="delete",result="ok",tier="store"}`, 1},
		{`scribefs_operation_duration_seconds_count{op="get",tier="cold"}`, 1},
		{`scribefs_operation_duration_seconds_count{op="read",tier="hot"}`, 1},
		{`scribefs_bytes_total{direction="read",tier="cold"}`, 3 << 20},
		{`scribefs_s3_requests_total{op="put",result="ok"}`, 1},
		{`scribefs_s3_requests_total{op="get",result="ok"}`, 1},
		{`scribefs_s3_requests_total{op="list",result="ok"}`, 1},
		{`scribefs_cache_misses_total`, 1},
		{`scribefs_cache_hits_total`, 1},
		{`scribefs_cache_bytes`, 1},
		{`scribefs_hot_bytes`, 3 << 20},
		{`scribefs_archive_backlog_segments`, 1},
		{`scribefs_archive_backlog_bytes`, 3 << 20},
		{`scribefs_archived_total`, 1},
		{`scribefs_cold_fetch_bytes_total`, 3 << 20},
	} {
		if v := metricValue(body, c.series); v < c.min {
			t.Errorf("%s = %v, want >= %v", c.series, v, c.min)
		}
	}
	for _, name := range []string{"scribefs_s3_retries_total", "scribefs_s3_errors_total", "scribefs_cache_evictions_total"} {
		if !strings.Contains(body, "# TYPE "+name+" counter") && !strings.Contains(body, "# HELP "+name) {
			// Vectors without a sample yet are not exposed; the store
			// collector's are always there.
			if name == "scribefs_cache_evictions_total" {
				t.Errorf("/metrics lacks %s", name)
			}
		}
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "# TYPE ") && !strings.HasPrefix(line, "# TYPE scribefs_") {
			t.Errorf("metric not named scribefs_*: %s", line)
		}
	}

	st := e.mustRun(nil, "status")
	for _, re := range []string{`(?m)^mounted: yes, at `, `(?m)^lease: held by \S+:\S+hot\.db, expires 20`, `(?m)^archive_backlog: 1 segments, 3\.0 MiB$`,
		`(?m)^cache_hits: [1-9]`, `(?m)^recent_errors: `, `(?m)^metrics: http://` + regexp.QuoteMeta(addr)} {
		if !regexp.MustCompile(re).MatchString(st) {
			t.Errorf("status does not match %s:\n%s", re, st)
		}
	}
	help := e.mustRun(nil, "--help") + e.mustRun(nil, "mount", "--help")
	if !strings.Contains(help, "--metrics-addr") || !strings.Contains(help, "fuse.scribefs") {
		t.Errorf("help lacks --metrics-addr or the fstab line:\n%s", help)
	}
	m.unmount()
	logs := m.logs.String()
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		n++
		if rec["level"] == "ERROR" && (rec["op"] == nil) {
			t.Errorf("error line names no op: %s", line)
		}
	}
	if n < 3 || !strings.Contains(logs, `"msg":"mounted"`) {
		t.Errorf("JSON logs: %d lines:\n%s", n, logs)
	}
	for what, text := range map[string]string{"/metrics": body, "logs": logs, "--help": help, "status": st} {
		if strings.Contains(text, miniotest.SecretKey) {
			t.Errorf("the secret key appears in %s", what)
		}
	}
}

// TestVerifyFindsDeletedObject: an object deleted from the bucket behind
// scribefs's back is reported as missing (exit 1), a stray object as an
// orphan; --repair reconciles the index, and a second run is clean.
func TestVerifyFindsDeletedObject(t *testing.T) {
	e := newEnv(t, "")
	for id := 1; id <= 3; id++ {
		e.mustRun(strings.NewReader(strings.Repeat(strconv.Itoa(id), 5000)), "put", strconv.Itoa(id), "-")
	}
	e.mustRun(nil, "put", "4", "-") // stays hot
	e.mustRun(nil, "archive", "1", "2", "3")
	if out := e.mustRun(nil, "verify"); !strings.Contains(out, "checked 1 hot and 3 cold segments") || !strings.Contains(out, "ok: no problems") {
		t.Fatalf("verify of a sound store:\n%s", out)
	}
	ctx := context.Background()
	if _, err := e.s3().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(2))}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s3().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(77)), Body: strings.NewReader("stray")}); err != nil {
		t.Fatal(err)
	}
	r := e.run(nil, "verify")
	if r.code != 1 || !strings.Contains(r.stdout, "segment 2 (cold): missing") || !strings.Contains(r.stdout, "segment 77 (cold): orphan") {
		t.Fatalf("verify after a delete behind its back: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = e.run(nil, "verify", "--repair")
	if r.code != 1 || !strings.Contains(r.stdout, "index reconciled") {
		t.Fatalf("verify --repair: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if out := e.mustRun(nil, "verify"); !strings.Contains(out, "ok: no problems") {
		t.Fatalf("verify after repair:\n%s", out)
	}
	if got := e.mustRun(nil, "ls"); got != "1\n3\n4\n77\n" {
		t.Fatalf("ls after repair: %q", got)
	}
}

// TestImportExport: import of a directory in parallel keeps bytes and
// mtimes, names that are not ids are reported and make it exit 1; export
// writes them back with their mtimes, with a plain progress record when
// standard error is not a terminal.
func TestImportExport(t *testing.T) {
	e := newEnv(t, "")
	in := filepath.Join(e.dir, "in")
	os.Mkdir(in, 0o755)
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	for id := 1; id <= 12; id++ {
		p := filepath.Join(in, strconv.Itoa(id))
		mustWriteFile(t, p, backendtest.RandomBytes(int64(id), id*100_000))
		os.Chtimes(p, mtime, mtime.Add(time.Duration(id)*time.Hour))
	}
	mustWriteFile(t, filepath.Join(in, "notes.txt"), []byte("x"))
	r := e.run(nil, "import", "--parallel", "6", in)
	if r.code != 1 || !strings.Contains(r.stderr, "notes.txt: not a decimal segment id") || !strings.Contains(r.stderr, "imported 12 segments") {
		t.Fatalf("import: exit %d: %s", r.code, r.stderr)
	}
	e.mustRun(nil, "archive", "3", "4")
	out := filepath.Join(e.dir, "out")
	r = e.run(nil, "export", out)
	if r.code != 0 || !strings.Contains(r.stderr, "exported 12 segments") {
		t.Fatalf("export: exit %d: %s", r.code, r.stderr)
	}
	for id := 1; id <= 12; id++ {
		p := filepath.Join(out, strconv.Itoa(id))
		got, err := os.ReadFile(p)
		if err != nil || string(got) != string(backendtest.RandomBytes(int64(id), id*100_000)) {
			t.Fatalf("exported %d: %d bytes, %v", id, len(got), err)
		}
		st, _ := os.Stat(p)
		if want := mtime.Add(time.Duration(id) * time.Hour); !st.ModTime().Equal(want) {
			t.Errorf("exported %d: mtime %v, want %v", id, st.ModTime(), want)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(out, ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestDaemonMount: mount --daemon returns once the mount serves, the file
// system works from another process, and unmounting ends the background
// process; a mount that cannot start makes --daemon fail with the reason.
func TestDaemonMount(t *testing.T) {
	e := newEnv(t, "")
	dir := filepath.Join(e.dir, "mnt")
	os.Mkdir(dir, 0o755)
	logFile := filepath.Join(e.dir, "daemon.log")
	r := e.run(nil, "mount", "--daemon", "--log-file", logFile, dir)
	if r.code != 0 {
		t.Fatalf("mount --daemon: exit %d: %s", r.code, r.stderr)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	pid := daemonPID(t, r.stdout)
	// No waiting: it has returned, so the mount is ready.
	sh(t, dir, "printf daemon > segments/9 && test \"$(cat segments/9)\" = daemon")
	if st := e.mustRun(nil, "status"); !strings.Contains(st, "mounted: yes, at "+dir) {
		t.Fatalf("status of the daemon mount:\n%s", st)
	}
	sh(t, e.dir, "umount "+dir)
	waitGone(t, pid)
	if logs, _ := os.ReadFile(logFile); !strings.Contains(string(logs), "msg=unmounted") {
		t.Errorf("daemon log lacks the unmount:\n%s", logs)
	}
	// Failure is reported by the parent: a mount point that is not there.
	r = e.run(nil, "mount", "--daemon", "--log-file", logFile, filepath.Join(e.dir, "nonexistent"))
	if r.code != 1 || !strings.Contains(r.stderr, "nonexistent") {
		t.Fatalf("mount --daemon of a missing directory: exit %d: %s", r.code, r.stderr)
	}
}

var pidRE = regexp.MustCompile(`\(pid (\d+),`)

func daemonPID(t *testing.T, out string) int {
	t.Helper()
	m := pidRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no pid in %q", out)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return
		}
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(b), ") Z ") {
			return // exited; its parent (init) reaps it
		}
		if time.Now().After(deadline) {
			t.Fatalf("scribefs daemon %d still running 30s after umount", pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFstabMount: `mount -t fuse.scribefs -o config=F scribefs MNT`, the
// form an fstab line takes, works through the mount.fuse.scribefs helper
// installed where mount(8) looks, with _netdev and other generic options
// ignored; umount ends it.
func TestFstabMount(t *testing.T) {
	e := newEnv(t, "")
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("TestFstabMount installs a helper in /sbin: run as root")
		}
		t.Skip("needs root to install /sbin/mount.fuse.scribefs")
	}
	helper := "/sbin/mount.fuse.scribefs"
	if _, err := os.Stat(helper); err == nil {
		// An installed helper is the system's; use a copy of ours in its
		// place and put it back afterwards.
		saved, _ := os.ReadFile(helper)
		t.Cleanup(func() { os.WriteFile(helper, saved, 0o755) })
	} else {
		t.Cleanup(func() { os.Remove(helper) })
	}
	script, err := os.ReadFile("../contrib/mount.fuse.scribefs")
	if err != nil {
		t.Fatal(err)
	}
	// As `make install` does: point the helper at the binary under test.
	abs, _ := filepath.Abs(scribefs)
	if err := os.WriteFile(helper, []byte(strings.ReplaceAll(string(script), "@BINDIR@/scribefs", abs)), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.dir, "fstab-mnt")
	os.Mkdir(dir, 0o755)
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	logFile := filepath.Join(e.dir, "fstab.log")
	out := sh(t, e.dir, fmt.Sprintf("mount -t fuse.scribefs -o config=%s,_netdev,nofail,log_file=%s scribefs %s", e.cfgPath, logFile, dir))
	pid := daemonPID(t, out)
	if mounts, _ := os.ReadFile("/proc/self/mounts"); !strings.Contains(string(mounts), dir) {
		t.Fatalf("%s not in /proc/self/mounts", dir)
	}
	sh(t, dir, "printf fstab > segments/5 && test \"$(cat segments/5)\" = fstab")
	if got := e.mustRun(nil, "get", "5"); got != "fstab" {
		t.Fatalf("get through the fstab mount: %q", got)
	}
	// ro is honoured as a second, read-only mount would be: check the flag
	// translation without mounting twice.
	sh(t, e.dir, "umount "+dir)
	waitGone(t, pid)
}
