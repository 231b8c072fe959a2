package main

import (
	"fmt"
	"io"
	"os"
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
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
		pr.bar = pr.p.AddBar(int64(total),
			mpb.PrependDecorators(
				decor.Name(verb+" ", decor.WC{C: decor.DindentRight}),
				decor.CountersNoUnit("%d/%d", decor.WCSyncSpace),
			),
			mpb.AppendDecorators(
				decor.Any(func(decor.Statistics) string { return pr.rate() }, decor.WCSyncSpace),
				decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done"),
			),
		)
		return pr
	}
	pr.stopped.Add(1)
	go pr.tick()
	return pr
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
	t := time.NewTicker(plainEvery)
	defer t.Stop()
	for {
		select {
		case <-pr.stop:
			return
		case <-t.C:
			fmt.Fprintln(pr.w, pr.line())
		}
	}
}

// line is the plain form: "verified 120/500 segments, 1.2 GiB (24.0 seg/s
// 10.0 MiB/s), ETA 16s".
func (pr *progress) line() string {
	pr.mu.Lock()
	done, total, bytes := pr.done, pr.total, pr.bytes
	pr.mu.Unlock()
	el := time.Since(pr.start)
	eta := "?"
	if done > 0 && total >= done {
		eta = (time.Duration(float64(el) / float64(done) * float64(total-done))).Round(time.Second).String()
	}
	return fmt.Sprintf("%s %d/%d segments, %s (%s), ETA %s", pr.verb, done, total, humanBytes(bytes), pr.rate(), eta)
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
