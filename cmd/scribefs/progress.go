package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// progress reports a long command's advance on standard error: a bar with
// rate and ETA when that is a terminal, else a plain line every few seconds
// (logs and pipes keep a readable record), and one final line either way.
type progress struct {
	verb  string // "verified", "imported", ...
	w     io.Writer
	start time.Time

	// bar is set on a terminal.
	p   *mpb.Progress
	bar *mpb.Bar

	// redraw is set on a terminal of unknown width: one line, redrawn
	// in place by tick.
	redraw bool

	// mu guards the fields below.
	mu      sync.Mutex
	done    int
	total   int
	bytes   int64
	stop    chan struct{}
	stopped sync.WaitGroup
}

// plainEvery is how often the plain form prints.
var plainEvery = 2 * time.Second

func newProgress(w io.Writer, verb string, total int) *progress {
	pr := &progress{verb: verb, w: w, start: time.Now(), total: total, stop: make(chan struct{})}
	if cols, ok := terminalWidth(w); ok {
		if cols == 0 {
			// A terminal that reports no size (a pty nobody sized:
			// some ssh, script and CI sessions): mpb would fit its
			// frame into zero columns and draw nothing. Redraw one
			// line in place instead.
			pr.redraw = true
			pr.stopped.Add(1)
			go pr.tick()
			return pr
		}
		pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
		pr.bar = pr.p.AddBar(int64(total),
			mpb.PrependDecorators(
				decor.Name(verb+" ", decor.WC{C: decor.DindentRight}),
				decor.CountersNoUnit("%d/%d", decor.WCSyncSpace),
			),
			mpb.AppendDecorators(
				decor.Percentage(decor.WCSyncSpace),
				decor.Any(func(decor.Statistics) string { return pr.amount() }, decor.WCSyncSpace),
				decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done"),
			),
		)
		return pr
	}
	pr.stopped.Add(1)
	go pr.tick()
	return pr
}

// terminalWidth tells whether w is a terminal and how many columns it
// has (0 when it does not say).
func terminalWidth(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	cols, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0, true
	}
	return cols, true
}

// amount renders the bytes so far and the rates.
func (pr *progress) amount() string {
	pr.mu.Lock()
	bytes := pr.bytes
	pr.mu.Unlock()
	return humanBytes(bytes) + ", " + pr.rate()
}

// rate renders segments and bytes per second so far.
func (pr *progress) rate() string {
	pr.mu.Lock()
	done, bytes := pr.done, pr.bytes
	pr.mu.Unlock()
	secs := max(time.Since(pr.start).Seconds(), 1e-3)
	return fmt.Sprintf("%.1f seg/s %s/s", float64(done)/secs, humanBytes(int64(float64(bytes)/secs)))
}

// SetTotal changes the number of items expected.
func (pr *progress) SetTotal(total int) {
	pr.mu.Lock()
	pr.total = total
	pr.mu.Unlock()
	if pr.bar != nil {
		pr.bar.SetTotal(int64(total), false)
	}
}

// Set records absolute progress (for reports that arrive as totals).
func (pr *progress) Set(done int, bytes int64) {
	pr.mu.Lock()
	pr.done, pr.bytes = done, bytes
	pr.mu.Unlock()
	if pr.bar != nil {
		pr.bar.SetCurrent(int64(done))
	}
}

// Add records one more item of n bytes.
func (pr *progress) Add(n int64) {
	pr.mu.Lock()
	pr.done++
	pr.bytes += n
	pr.mu.Unlock()
	if pr.bar != nil {
		pr.bar.Increment()
	}
}

func (pr *progress) tick() {
	defer pr.stopped.Done()
	every := plainEvery
	if pr.redraw {
		every = 150 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-pr.stop:
			if pr.redraw {
				fmt.Fprintf(pr.w, "\r%s\x1b[K\n", pr.frame())
			}
			return
		case <-t.C:
			if pr.redraw {
				fmt.Fprintf(pr.w, "\r%s\x1b[K", pr.frame())
			} else {
				fmt.Fprintln(pr.w, pr.line())
			}
		}
	}
}

// frame is the one-line bar of a terminal of unknown width:
// "exported 23/40 [=========>---------] 57 % 65.8 MiB, 118.6 seg/s 339.3 MiB/s ETA 0s".
func (pr *progress) frame() string {
	pr.mu.Lock()
	done, total := pr.done, pr.total
	pr.mu.Unlock()
	const width = 20
	pct, fill := 0, 0
	if total > 0 {
		pct = min(100, done*100/total)
		fill = min(width, done*width/total)
	}
	bar := strings.Repeat("=", fill) + strings.Repeat("-", width-fill)
	if fill > 0 && fill < width {
		bar = bar[:fill-1] + ">" + bar[fill:]
	}
	return fmt.Sprintf("%s %d/%d [%s] %d %% %s, ETA %s", pr.verb, done, total, bar, pct, pr.amount(), pr.eta())
}

// eta is the time left at the rate so far, "?" before the first item.
func (pr *progress) eta() string {
	pr.mu.Lock()
	done, total := pr.done, pr.total
	pr.mu.Unlock()
	if done == 0 || total < done {
		return "?"
	}
	el := time.Since(pr.start)
	return (time.Duration(float64(el) / float64(done) * float64(total-done))).Round(time.Second).String()
}

// line is the plain form: "verified 120/500 segments, 1.2 GiB (24.0 seg/s
// 10.0 MiB/s), ETA 16s".
func (pr *progress) line() string {
	pr.mu.Lock()
	done, total, bytes := pr.done, pr.total, pr.bytes
	pr.mu.Unlock()
	return fmt.Sprintf("%s %d/%d segments, %s (%s), ETA %s", pr.verb, done, total, humanBytes(bytes), pr.rate(), pr.eta())
}

// Finish ends the display and prints the closing line.
func (pr *progress) Finish() {
	if pr.bar != nil {
		// A bar not complete (errors, interruption, nothing to do) is
		// aborted, keeping its last frame on screen.
		if !pr.bar.Completed() {
			pr.bar.Abort(false)
		}
		pr.p.Wait()
	} else {
		close(pr.stop)
		pr.stopped.Wait()
	}
	pr.mu.Lock()
	done, bytes := pr.done, pr.bytes
	pr.mu.Unlock()
	fmt.Fprintf(pr.w, "%s %d segments, %s in %s\n", pr.verb, done, humanBytes(bytes), time.Since(pr.start).Round(time.Millisecond))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
