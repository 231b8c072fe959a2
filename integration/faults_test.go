package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/internal/faultproxy"
)

// Fault tests run the real scribefs binary with its S3 endpoint pointing at
// a fault-injecting HTTP proxy in front of the shared MinIO, and drive the
// mount with shell tools. The proxy counts requests, so a test can say how
// many attempts a read took.

// newProxyEnv is newEnv with the endpoint behind a fault proxy and the idle
// timeout set to timeoutSecs (max_retries stays 2).
func newProxyEnv(t *testing.T, timeoutSecs int, extra string) (*env, *faultproxy.Proxy) {
	t.Helper()
	e := newEnv(t, "")
	p, err := faultproxy.New(minio.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(cfg), "endpoint = \""+minio.Endpoint+"\"", "endpoint = \""+p.URL+"\"", 1)
	s = strings.Replace(s, "timeout_secs = 5", "timeout_secs = "+strconv.Itoa(timeoutSecs), 1)
	s = strings.Replace(s, "[cache]\n", "[cache]\n"+extra, 1)
	e.writeConfig(s)
	return e, p
}

// objName is the part of a segment's object key the proxy matches on.
func objName(id uint64) string { return fmt.Sprintf("segment-%016x", id) }

// mustColdSegment stores data as segment id and archives it.
func (e *env) mustColdSegment(id uint64, data []byte) string {
	e.t.Helper()
	src := filepath.Join(e.dir, "src"+strconv.FormatUint(id, 10))
	mustWriteFile(e.t, src, data)
	e.mustRun(nil, "put", strconv.FormatUint(id, 10), src)
	e.mustRun(nil, "archive", strconv.FormatUint(id, 10))
	return src
}

func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("fds of %d: %v", pid, err)
	}
	return len(ents)
}

// rssBytes is the process's anonymous resident memory (RssAnon): its heap
// and stacks. File-backed pages (the bbolt mmap of the hot tier) are left
// out: they are page cache the kernel can drop at will.
func rssBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "RssAnon:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (m *mount) alive(t *testing.T) {
	t.Helper()
	select {
	case err := <-m.done:
		m.done <- err
		t.Fatalf("the mount died: %v\n%s", err, m.logs.String())
	default:
	}
	if _, err := os.Stat(m.Segs()); err != nil {
		t.Fatalf("mount point unusable: %v", err)
	}
}

// TestFaultTransientThroughMount: each transient fault, injected into the
// first two GETs of a cold segment, is retried inside scribefs and `cmp`
// through the mount sees the right bytes; the same fault without end fails
// the read with EIO within timeout_secs × (max_retries+1) plus slack; a
// corrupted GET body is EIO, never wrong bytes; open fds of the mount return
// to their baseline after the storm.
func TestFaultTransientThroughMount(t *testing.T) {
	const timeout = 2 // timeout_secs
	// Each case counts the faults injected into its own segment's GETs:
	// no prefetching of the next segment before its faults are set.
	e, p := newProxyEnv(t, timeout, "prefetch_segments = 0\n")
	faults := []struct {
		name string
		f    faultproxy.Fault
	}{
		{"500 InternalError", faultproxy.Fault{Kind: faultproxy.Error, Status: 500, Code: "InternalError"}},
		{"503 SlowDown", faultproxy.Fault{Kind: faultproxy.Error, Status: 503, Code: "SlowDown"}},
		{"reset mid-body", faultproxy.Fault{Kind: faultproxy.Reset, After: 300 << 10}},
		{"truncated body", faultproxy.Fault{Kind: faultproxy.Truncate, After: 200 << 10}},
		{"stall mid-body", faultproxy.Fault{Kind: faultproxy.Stall, After: 100 << 10}},
		{"stall before headers", faultproxy.Fault{Kind: faultproxy.Stall, After: -1}},
		{"latency 1s", faultproxy.Fault{Kind: faultproxy.Latency, Delay: time.Second}},
		{"bandwidth 1 MiB/s", faultproxy.Fault{Kind: faultproxy.Bandwidth, BytesPerSec: 1 << 20}},
	}
	srcs := map[uint64]string{}
	for i := range faults {
		id := uint64(100 + i)
		srcs[id] = e.mustColdSegment(id, backendtest.RandomBytes(int64(id), 3<<20+int(id)))
	}
	exhaust := []uint64{200, 201, 202}
	for _, id := range exhaust {
		srcs[id] = e.mustColdSegment(id, backendtest.RandomBytes(int64(id), 2<<20))
	}
	m := e.mount()
	pid := m.cmd.Process.Pid
	// warm up: one clean cold read, so pooled connections are counted
	sh(t, m.Segs(), "cmp 202 "+srcs[202])
	fdsBefore := openFDs(t, pid)

	for i, c := range faults {
		id := uint64(100 + i)
		p.ResetStats()
		f := c.f
		f.Method, f.PathContains, f.FirstN = "GET", objName(id), 2
		p.Set(f)
		start := time.Now()
		if out, err := shErr(m.Segs(), fmt.Sprintf("cmp %d %s", id, srcs[id])); err != nil {
			t.Fatalf("%s: read through the mount after 2 injected faults: %v %s\n%s", c.name, err, out, m.logs.String())
		}
		took := time.Since(start)
		st := p.Stats()
		if c.f.Kind != faultproxy.Latency && c.f.Kind != faultproxy.Bandwidth && st.Injected[c.f.Kind] != 2 {
			t.Fatalf("%s: %d faults injected, want 2", c.name, st.Injected[c.f.Kind])
		}
		t.Logf("MEASURED %s: cmp OK, %d GETs for the segment (2 faulted), %v", c.name, p.Count("GET", objName(id)), took.Round(time.Millisecond))
	}

	sh(t, m.Segs(), "printf hot > 300")
	for i, c := range []struct {
		name string
		f    faultproxy.Fault
	}{
		{"503 SlowDown forever", faultproxy.Fault{Kind: faultproxy.Error, Status: 503, Code: "SlowDown"}},
		{"stall forever", faultproxy.Fault{Kind: faultproxy.Stall, After: 1000}},
	} {
		id := exhaust[i]
		p.ResetStats()
		f := c.f
		f.Method, f.PathContains = "GET", objName(id)
		p.Set(f)
		start := time.Now()
		out, err := shErr(m.Segs(), fmt.Sprintf("cat %d > /dev/null", id))
		took := time.Since(start)
		if err == nil || !strings.Contains(out, "Input/output error") {
			t.Fatalf("%s: want EIO, got %v %q", c.name, err, out)
		}
		// One FUSE read costs at most timeout_secs × (max_retries+1); the
		// kernel re-issues a failed page-cache read once synchronously, so
		// read(2) can take two of those.
		bound := 2*time.Duration(timeout*3)*time.Second + 5*time.Second
		if took > bound {
			t.Fatalf("%s: EIO after %v, bound %v", c.name, took, bound)
		}
		// hot data is untouched by a cold-tier fault
		if got := sh(t, m.Segs(), "cat 300"); got != "hot" {
			t.Fatalf("hot read during %s: %q", c.name, got)
		}
		t.Logf("MEASURED %s: EIO after %v, %d GETs for the segment (max_retries = 2)", c.name, took.Round(time.Millisecond), p.Count("GET", objName(id)))
	}

	// corrupted bytes: never returned, and the bad block is not cached
	id := exhaust[2] + 1
	srcs[id] = e.mustColdSegmentVia(m, id, backendtest.RandomBytes(int64(id), 2<<20))
	p.ResetStats()
	p.Set(faultproxy.Fault{Kind: faultproxy.Corrupt, Method: "GET", PathContains: objName(id), After: 777})
	out, err := shErr(m.Segs(), fmt.Sprintf("cat %d > /dev/null", id))
	if err == nil || !strings.Contains(out, "Input/output error") {
		t.Fatalf("corrupted GET body: want EIO, got %v %q", err, out)
	}
	corruptGets := p.Count("GET", objName(id))
	p.Clear()
	sh(t, m.Segs(), fmt.Sprintf("cmp %d %s", id, srcs[id]))
	t.Logf("MEASURED corrupt byte in every GET body: EIO (%d GETs, %d corrupted), correct bytes once the fault is cleared", corruptGets, p.Stats().Injected[faultproxy.Corrupt])

	p.Clear()
	m.alive(t)
	var fdsAfter int
	deadline := time.Now().Add(10 * time.Second)
	for {
		fdsAfter = openFDs(t, pid)
		if fdsAfter <= fdsBefore+2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if fdsAfter > fdsBefore+2 {
		t.Fatalf("open fds of the mount: %d before the fault storm, %d 10s after", fdsBefore, fdsAfter)
	}
	t.Logf("MEASURED open fds of the mount process: %d before the fault storm, %d after", fdsBefore, fdsAfter)
}

// mustColdSegmentVia writes a segment through the mount and archives it
// through the mount's control socket.
func (e *env) mustColdSegmentVia(m *mount, id uint64, data []byte) string {
	e.t.Helper()
	src := filepath.Join(e.dir, "src"+strconv.FormatUint(id, 10))
	mustWriteFile(e.t, src, data)
	sh(e.t, m.Segs(), fmt.Sprintf("cp %s %d", src, id))
	e.mustRun(nil, "archive", strconv.FormatUint(id, 10))
	return src
}

// TestFaultRSSBoundedColdRead: reading a cold segment several times the
// cache size keeps the mount's RSS under cache max_bytes + 100 MiB.
func TestFaultRSSBoundedColdRead(t *testing.T) {
	e, _ := newProxyEnv(t, 5, "")
	const size = 480 << 20 // cache max_bytes is 64 MiB in newEnv
	src := filepath.Join(e.dir, "big")
	sh(t, e.dir, fmt.Sprintf("head -c %d /dev/urandom > %s", size, src))
	e.mustRun(nil, "put", "1", src)
	e.mustRun(nil, "archive", "1")
	m := e.mount()
	pid := m.cmd.Process.Pid
	before := rssBytes(pid)
	stop := make(chan struct{})
	peak := make(chan int64)
	go func() {
		var top int64
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				peak <- top
				return
			case <-tick.C:
				top = max(top, rssBytes(pid))
			}
		}
	}()
	start := time.Now()
	out, err := shErr(m.Segs(), "cmp 1 "+src)
	close(stop)
	top := <-peak
	if err != nil {
		t.Fatalf("cold read of %d MiB: %v %s", size>>20, err, out)
	}
	const limit = 64<<20 + 100<<20
	if top > limit {
		t.Fatalf("mount RSS peaked at %d MiB reading a %d MiB cold segment; bound %d MiB", top>>20, size>>20, limit>>20)
	}
	t.Logf("MEASURED anonymous RSS of the mount: %d MiB before, peak %d MiB while reading a %d MiB cold segment (cache 64 MiB) in %v",
		before>>20, top>>20, size>>20, time.Since(start).Round(time.Millisecond))
}
