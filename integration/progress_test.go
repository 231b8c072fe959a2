package integration

import (
	"bytes"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/internal/faultproxy"
)

// screen is what a command wrote to its terminal, as it arrived.
type screen struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// onTerminal runs scribefs with a pseudo-terminal as its standard input,
// output and error, sized cols×rows (0×0: a terminal that reports no
// size), and returns everything it drew, in order.
func (e *env) onTerminal(cols, rows uint16, args ...string) string {
	e.t.Helper()
	cmd := exec.Command(scribefs, append([]string{"--config", e.cfgPath}, args...)...)
	cmd.Env = append(cleanEnv(), "TERM=xterm")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: cols, Rows: rows})
	if err != nil {
		e.t.Fatal(err)
	}
	defer ptmx.Close()
	var scr screen
	copied := make(chan struct{})
	go func() { io.Copy(&scr, ptmx); close(copied) }()
	if err := cmd.Wait(); err != nil {
		e.t.Fatalf("scribefs %v on a terminal: %v\n%s", args, err, scr.String())
	}
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	return scr.String()
}

// midRun returns the first bar frame drawn while the command was under
// way: before its closing line, with some but not all items done.
func midRun(out string, frame *regexp.Regexp, total int) string {
	for _, m := range frame.FindAllStringSubmatch(out, -1) {
		if done, _ := strconv.Atoi(m[1]); done > 0 && done < total {
			return m[0]
		}
	}
	return ""
}

// TestProgressOnTerminal: on a terminal, `archive --all` (beside a mount,
// through its socket) and `verify` draw a bar with count, percentage,
// bytes, rate and ETA while they run, before their closing line, on a
// sized terminal and on one that reports no size; piped, they print plain
// lines without carriage returns. S3 is slowed by the fault proxy (PUT
// latency, GET bandwidth) so the commands run long enough to be seen.
func TestProgressOnTerminal(t *testing.T) {
	e, p := newProxyEnv(t, 5, "")
	const n = 6
	for id := 1; id <= n; id++ {
		e.mustRun(bytes.NewReader(backendtest.RandomBytes(int64(id), 1<<20)), "put", strconv.Itoa(id), "-")
	}
	m := e.mount()
	p.Set(faultproxy.Fault{Kind: faultproxy.Latency, Method: "PUT", PathContains: "segment-", Delay: 400 * time.Millisecond})
	bar := regexp.MustCompile(`archived +(\d+)/6 \[[=>-]*\] +\d+ % [0-9.]+ [KMG]?i?B, [0-9.]+ seg/s [0-9.]+ [KMG]?i?B/s`)
	out := e.onTerminal(120, 40, "archive", "--all", "--parallel", "1")
	closing := strings.Index(out, "archived 6 segments")
	if closing < 0 {
		t.Fatalf("archive --all on a 120x40 terminal: no closing line:\n%q", out)
	}
	frame := midRun(out[:closing], bar, n)
	if frame == "" {
		t.Fatalf("archive --all on a 120x40 terminal: no bar frame drawn mid-run:\n%q", out)
	}
	t.Logf("archive --all, mid-run frame: %s", frame)
	m.unmount()

	p.Set(faultproxy.Fault{Kind: faultproxy.Bandwidth, Method: "GET", PathContains: "segment-", BytesPerSec: 2 << 20})
	vbar := regexp.MustCompile(`verified +(\d+)/6 \[[=>-]*\] +\d+ % [0-9.]+ [KMG]?i?B, `)
	for _, size := range [][2]uint16{{120, 40}, {0, 0}} {
		out := e.onTerminal(size[0], size[1], "verify", "--parallel", "1")
		closing := strings.Index(out, "verified 6 segments")
		if closing < 0 {
			t.Fatalf("verify on a %dx%d terminal: no closing line:\n%q", size[0], size[1], out)
		}
		frame := midRun(out[:closing], vbar, n)
		if frame == "" {
			t.Fatalf("verify on a %dx%d terminal: no bar frame drawn mid-run:\n%q", size[0], size[1], out)
		}
		t.Logf("verify on a %dx%d terminal, mid-run frame: %s", size[0], size[1], frame)
	}

	// Piped: plain lines, no carriage returns, the closing line.
	cmd := exec.Command(scribefs, "--config", e.cfgPath, "verify", "--parallel", "1")
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("verify piped: %v: %s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "\r") || !strings.Contains(stderr.String(), "verified 6 segments") {
		t.Fatalf("verify piped: %q", stderr.String())
	}
	if !regexp.MustCompile(`(?m)^verified \d+/6 segments, `).MatchString(stderr.String()) {
		t.Fatalf("verify piped printed no progress line while it ran (2 s apart): %q", stderr.String())
	}
}
