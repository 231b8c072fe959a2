package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// errIdle is what the idle watchdog reports; classify maps it to
// backend.ErrUnavailable.
var errIdle = errors.New("idle timeout")

// idleError is returned in place of the context error a watchdog-cancelled
// request produces: it must not look like the caller's own cancellation,
// which is final, while an idle connection is worth retrying.
type idleError struct{ d time.Duration }

func (e *idleError) Error() string        { return fmt.Sprintf("no bytes moved for %v (idle timeout)", e.d) }
func (e *idleError) Is(target error) bool { return target == errIdle }

// httpDoer is the SDK's HTTP client interface.
type httpDoer interface {
	Do(*http.Request) (*http.Response, error)
}

// idleClient enforces Config.Timeout as an idle timeout on every request the
// SDK sends: each request gets its own cancellable context and a watchdog
// timer, started when the request starts and reset whenever request-body bytes
// are sent or response-body bytes are received. A transfer that keeps flowing
// is never cut; one that stalls for the idle duration (before the headers or
// in the middle of a body) is cancelled. It sits outside the SDK's
// BuildableClient so that the SDK can still configure that client (the
// AWS_CA_BUNDLE root pool), which it refuses to do to a client it did not
// build.
type idleClient struct {
	next httpDoer
	idle time.Duration
}

func (c *idleClient) Do(req *http.Request) (*http.Response, error) {
	if c.idle <= 0 {
		return c.next.Do(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{idle: c.idle, ctx: ctx, cancel: cancel}
	w.timer = time.AfterFunc(c.idle, func() { cancel(errIdle) })

	req = req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = &sendBody{ReadCloser: req.Body, w: w}
		if getBody := req.GetBody; getBody != nil {
			req.GetBody = func() (io.ReadCloser, error) {
				b, err := getBody()
				if err != nil || b == nil || b == http.NoBody {
					return b, err
				}
				return &sendBody{ReadCloser: b, w: w}, nil
			}
		}
	}
	resp, err := c.next.Do(req)
	if err != nil {
		w.stop()
		if w.fired() {
			return nil, &idleError{c.idle}
		}
		return nil, err
	}
	resp.Body = &recvBody{rc: resp.Body, w: w}
	return resp, nil
}

// watchdog cancels one request when it has been idle too long.
type watchdog struct {
	idle   time.Duration
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu      sync.Mutex // guards timer re-arming against stop
	timer   *time.Timer
	stopped bool
}

// touch records progress.
func (w *watchdog) touch() {
	w.mu.Lock()
	if !w.stopped {
		w.timer.Reset(w.idle)
	}
	w.mu.Unlock()
}

// stop ends the watch and releases the request context.
func (w *watchdog) stop() {
	w.mu.Lock()
	w.stopped = true
	w.timer.Stop()
	w.mu.Unlock()
	w.cancel(nil)
}

// fired reports whether the watchdog (and not the caller) cancelled the
// request.
func (w *watchdog) fired() bool { return errors.Is(context.Cause(w.ctx), errIdle) }

type sendBody struct {
	io.ReadCloser
	w *watchdog
}

func (b *sendBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.w.touch()
	}
	return n, err
}

type recvBody struct {
	rc io.ReadCloser
	w  *watchdog
}

func (b *recvBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.w.touch()
	}
	if err != nil && err != io.EOF && b.w.fired() {
		err = &idleError{b.w.idle}
	}
	return n, err
}

func (b *recvBody) Close() error {
	err := b.rc.Close()
	b.w.stop()
	return err
}
