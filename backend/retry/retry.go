// Package retry is a backend.Backend wrapper that retries transient failures
// with exponential backoff and full jitter.
//
// Only errors for which backend.IsTransient is true are retried (timeouts,
// resets, 5xx, throttling, all wrapped as backend.ErrUnavailable); ErrNotFound,
// ErrPermission, ErrInvalid, ErrStale and every other error are final and
// returned at once. Retries stop when the caller's context ends. Backends
// under this wrapper should not retry on their own (backend/s3 does not), so
// Policy.MaxRetries is the whole story.
//
// Each operation keeps one retry budget:
//
//   - Put is retried only when the source is an io.Seeker: the source is
//     rewound to where it stood when Put was called. Any other source is
//     consumed by the first attempt, so that attempt is the only one.
//   - Get retries opening, and the reader it returns resumes after a
//     transient failure in the middle of the body by re-opening the segment
//     at the current offset, pinned to one version so the bytes of two
//     versions are never spliced: a replaced segment fails the read with
//     backend.ErrStale. Re-opens spend the same budget as the first open.
//   - List resumes after the last entry delivered to fn: a retried listing
//     starts again from the beginning and skips ids up to that one, so fn
//     sees every id once, in order. An error from fn is never retried.
//   - Delete retries. A retry that finds the segment gone returns
//     ErrNotFound, as the contract says for a missing segment, but says in
//     its message that an earlier attempt failed: the store may have
//     deleted the segment and lost the reply, which the wrapper cannot tell
//     from a segment that was never there. Callers that only need the
//     segment gone treat ErrNotFound as success anyway.
//
// The wrapper starts no goroutines.
package retry

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// Defaults applied by New to zero Policy fields.
const (
	DefaultBaseDelay = 100 * time.Millisecond
	DefaultMaxDelay  = 10 * time.Second
)

// Policy says how hard to try.
type Policy struct {
	// MaxRetries is the number of retries after the first attempt, as the
	// upstream max_retries: 0 means one attempt, 3 means up to four.
	// Negative counts as 0.
	MaxRetries int
	// BaseDelay is the backoff ceiling before the first retry; it doubles
	// for each further retry up to MaxDelay. The wait is drawn uniformly
	// from zero to the ceiling (full jitter), so that clients failing
	// together do not retry together. Zero means DefaultBaseDelay and
	// DefaultMaxDelay.
	BaseDelay, MaxDelay time.Duration
	// OnRetry, when set, is called before each retry with the operation
	// ("put", "get", "stat", "delete", "list"; id is 0 for list), the
	// number of the retry about to happen (1 for the first) and the error
	// that caused it. It is for logging and metrics, and must not block.
	OnRetry func(op string, id segment.ID, attempt int, err error)
}

// New wraps b so that transient failures are retried according to p.
func New(b backend.Backend, p Policy) backend.Backend {
	p.MaxRetries = max(p.MaxRetries, 0)
	if p.BaseDelay <= 0 {
		p.BaseDelay = DefaultBaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = DefaultMaxDelay
	}
	p.MaxDelay = max(p.MaxDelay, p.BaseDelay)
	return &retrier{Backend: b, p: p}
}

// retrier embeds the wrapped backend; Close passes straight through.
type retrier struct {
	backend.Backend
	p Policy
	// unversionedReaders is set once a Get from the wrapped backend has
	// returned a reader that does not report its version; from then on Get
	// pins reads with a Stat first.
	unversionedReaders atomic.Bool
}

// Unwrap returns the wrapped backend, for callers that need methods beyond
// backend.Backend (such as the S3 backend's Health).
func (r *retrier) Unwrap() backend.Backend { return r.Backend }

// budget counts the retries one operation has spent.
type budget struct{ used int }

// again decides whether err is worth another attempt and, if so, waits the
// backoff. When it is not, it returns the error to hand the caller.
func (r *retrier) again(ctx context.Context, op string, id segment.ID, b *budget, err error) (bool, error) {
	if !backend.IsTransient(err) {
		return false, err
	}
	if cerr := ctx.Err(); cerr != nil {
		return false, fmt.Errorf("%w (retry abandoned: %w)", err, cerr)
	}
	if b.used >= r.p.MaxRetries {
		if r.p.MaxRetries > 0 {
			err = fmt.Errorf("%w (gave up after %d attempts)", err, b.used+1)
		}
		return false, err
	}
	b.used++
	if r.p.OnRetry != nil {
		r.p.OnRetry(op, id, b.used, err)
	}
	if werr := sleep(ctx, r.backoff(b.used)); werr != nil {
		return false, fmt.Errorf("%w (retry abandoned: %w)", err, werr)
	}
	return true, nil
}

// backoff returns the wait before retry n (1-based): uniform in
// [0, min(MaxDelay, BaseDelay*2^(n-1))].
func (r *retrier) backoff(n int) time.Duration {
	ceiling := r.p.BaseDelay
	for i := 1; i < n && ceiling < r.p.MaxDelay; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, r.p.MaxDelay)
	return rand.N(ceiling + 1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Put retries a seekable source from where it stood; see the package doc.
func (r *retrier) Put(ctx context.Context, id segment.ID, src io.Reader, opts backend.PutOptions) (segment.Info, error) {
	seeker, _ := src.(io.Seeker)
	var start int64
	if seeker != nil {
		pos, err := seeker.Seek(0, io.SeekCurrent)
		if err != nil {
			seeker = nil // a Seeker that cannot tell its position cannot be rewound
		}
		start = pos
	}
	var b budget
	for {
		info, err := r.Backend.Put(ctx, id, src, opts)
		if err == nil || seeker == nil {
			return info, err
		}
		ok, err := r.again(ctx, "put", id, &b, err)
		if !ok {
			return segment.Info{}, err
		}
		if _, serr := seeker.Seek(start, io.SeekStart); serr != nil {
			return segment.Info{}, fmt.Errorf("retry put segment %d: rewinding the source: %w", id, serr)
		}
	}
}

func (r *retrier) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	var b budget
	for {
		info, err := r.Backend.Stat(ctx, id)
		if err == nil {
			return info, nil
		}
		if ok, err := r.again(ctx, "stat", id, &b, err); !ok {
			return segment.Info{}, err
		}
	}
}

// Delete retries; see the package doc for ErrNotFound after a retry.
func (r *retrier) Delete(ctx context.Context, id segment.ID, ifVersion string) error {
	var b budget
	var first error
	for {
		err := r.Backend.Delete(ctx, id, ifVersion)
		if err == nil {
			return nil
		}
		if first != nil && errors.Is(err, backend.ErrNotFound) {
			return fmt.Errorf("%w (an earlier attempt failed with %q and may have deleted it)", err, first.Error())
		}
		if first == nil {
			first = err
		}
		if ok, err := r.again(ctx, "delete", id, &b, err); !ok {
			return err
		}
	}
}

// List resumes after the last delivered id; see the package doc.
func (r *retrier) List(ctx context.Context, fn func(segment.Info) error) error {
	var b budget
	var last segment.ID
	delivered := false
	var fnErr error
	for {
		err := r.Backend.List(ctx, func(info segment.Info) error {
			if delivered && info.ID <= last {
				return nil
			}
			if err := fn(info); err != nil {
				fnErr = err
				return err
			}
			last, delivered = info.ID, true
			return nil
		})
		if err == nil || fnErr != nil {
			return err
		}
		if ok, err := r.again(ctx, "list", 0, &b, err); !ok {
			return err
		}
	}
}

// versioned is implemented by readers that know which version of the
// segment they read (the S3 backend's report the ETag). Get pins resumed
// reads to it; for readers without it, Get learns the version with a Stat
// before opening.
type versioned interface{ Version() string }

// Get opens the segment with retries and returns a reader that resumes
// after transient body failures; see the package doc.
func (r *retrier) Get(ctx context.Context, id segment.ID, opts backend.GetOptions) (io.ReadCloser, error) {
	g := &resumingReader{r: r, ctx: ctx, id: id, opts: opts, pin: opts.Version}
	if g.pin != "" || r.p.MaxRetries == 0 {
		// Nothing to learn: the caller pinned the read, or a broken body
		// will not be resumed anyway.
		if err := g.open(); err != nil {
			return nil, err
		}
		return g, nil
	}
	if !r.unversionedReaders.Load() {
		if err := g.open(); err != nil {
			return nil, err
		}
		if v, ok := g.cur.(versioned); ok && v.Version() != "" {
			g.pin = v.Version()
			return g, nil
		}
		r.unversionedReaders.Store(true)
		g.cur.Close()
		g.cur = nil
	}
	if err := g.openPinnedByStat(); err != nil {
		return nil, err
	}
	return g, nil
}

// resumingReader reads a segment through as many opens as it takes.
type resumingReader struct {
	r    *retrier
	ctx  context.Context
	id   segment.ID
	opts backend.GetOptions
	// pin is the version every open asks for; empty only when neither the
	// caller nor the backend can name one, and then a broken body is not
	// resumed.
	pin  string
	b    budget
	cur  io.ReadCloser
	done int64 // bytes delivered so far
	err  error // sticky: once failed, always failed

	// A whole read whose first reader checks a recorded CRC32C at EOF:
	// crc runs over every byte delivered, and after a resume the wrapper
	// checks it at EOF (the resumed, ranged, readers cannot).
	check   bool
	want    uint32
	crc     uint32
	resumed bool
}

// wholeChecked is implemented by readers of a whole object that check it
// at EOF against a recorded CRC32C (the S3 backend's).
type wholeChecked interface{ WholeCRC32C() (uint32, bool) }

// open opens the rest of the range at the pinned version, retrying
// transient failures.
func (g *resumingReader) open() error {
	o := g.opts
	o.Version = g.pin
	o.Offset += g.done
	if o.Length >= 0 {
		o.Length -= g.done
		if g.done > 0 && o.Length <= 0 {
			// Everything was delivered and only the EOF went missing. (A
			// first open with Length 0 still asks the backend, which must
			// report a missing segment.)
			g.cur = io.NopCloser(eofReader{})
			return nil
		}
	}
	for {
		rc, err := g.r.Backend.Get(g.ctx, g.id, o)
		if err == nil {
			g.cur = rc
			if g.done == 0 && o.Offset == 0 && o.Length < 0 {
				if w, ok := rc.(wholeChecked); ok {
					g.want, g.check = w.WholeCRC32C()
				}
			} else if g.done > 0 {
				g.resumed = true
			}
			return nil
		}
		if ok, err := g.r.again(g.ctx, "get", g.id, &g.b, err); !ok {
			return err
		}
	}
}

// openPinnedByStat pins the read to the version Stat reports, then opens
// it. A Put landing between the two makes the open fail with ErrStale
// (the caller asked for no version, so that is not the caller's problem):
// it tries again a few times.
func (g *resumingReader) openPinnedByStat() error {
	for tries := 0; ; tries++ {
		info, err := g.r.Stat(g.ctx, g.id)
		if err != nil {
			return err
		}
		g.pin = info.Version
		err = g.open()
		if err == nil || !errors.Is(err, backend.ErrStale) || tries == 2 {
			return err
		}
	}
}

func (g *resumingReader) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	for {
		if g.cur == nil {
			if err := g.open(); err != nil {
				g.err = err
				return 0, err
			}
		}
		n, err := g.cur.Read(p)
		g.done += int64(n)
		if g.check {
			g.crc = crc32.Update(g.crc, castagnoli, p[:n])
		}
		if err == io.EOF && g.check && g.resumed && g.crc != g.want {
			g.err = fmt.Errorf("get segment %d: %w: read crc32c %08x after %d retries resumed it, recorded %08x",
				g.id, segment.ErrChecksum, g.crc, g.b.used, g.want)
			return n, g.err
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		if g.pin == "" && backend.IsTransient(err) && g.r.p.MaxRetries > 0 {
			err = fmt.Errorf("%w (not resumed: segment %d has no version to pin)", err, g.id)
		}
		if g.pin == "" {
			g.err = err
			return n, err
		}
		g.cur.Close()
		g.cur = nil
		ok, err := g.r.again(g.ctx, "get", g.id, &g.b, err)
		if !ok {
			g.err = err
			return n, err
		}
		if n > 0 {
			return n, nil // re-open on the next call
		}
	}
}

func (g *resumingReader) Close() error {
	if g.err == nil {
		g.err = errors.New("read after close")
	}
	if g.cur == nil {
		return nil
	}
	err := g.cur.Close()
	g.cur = nil
	return err
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
