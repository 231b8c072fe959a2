package mount

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/internal/control"
)

// Fence is what the lease keeper stops and restarts: the store's changes
// to the cold tier (tier.Store implements it).
type Fence interface {
	// Fence stops every change to the cold tier and cancels those in
	// flight.
	Fence(reason error)
	// AllowColdUntil allows changes again, until the given time of the
	// store's clock.
	AllowColdUntil(until time.Time)
}

// LeaseOptions configure KeepLease.
type LeaseOptions struct {
	S3    *s3.Backend
	Fence Fence
	// HotPath is the hot-tier file: with the host name it names this
	// holder for people, and the random id kept beside it (HolderID)
	// identifies it.
	HotPath  string
	TakeOver bool
	// Wait makes KeepLease return only once the lease is held (watching a
	// lease that looks expired for its TTL first), and fail otherwise: for
	// commands that change the bucket without a mount.
	Wait bool
	// AssumeSoleWriter lets a store that ignores conditional puts be
	// written anyway (the lease then cannot keep two writers apart).
	AssumeSoleWriter bool
	Log              *slog.Logger
	// Retry is how often the lease is sought while S3 is unreachable
	// (default 5s).
	Retry time.Duration
	// TTL is the lease's lifetime without renewal (s3.DefaultLeaseTTL). It
	// is renewed every TTL/4, and changes to the cold tier stop Margin
	// (default TTL/4) before it would expire by this host's monotonic
	// clock unrenewed, so several renewals may fail in a row first.
	TTL    time.Duration
	Margin time.Duration
	// OnHeld, when set, is called in the background each time the lease is
	// taken and the store may write, with holding, which reports whether
	// it still may.
	OnHeld func(ctx context.Context, l *s3.Lease, holding func() bool)
	// Watching, when set, is told that another holder's lease looks
	// expired and is being watched for ttl before it is taken.
	Watching func(holder string, ttl time.Duration)

	// Now (monotonic), Wall and After are the clocks (default time.Now,
	// time.Now, time.After); the store's clock must be Now.
	Now   func() time.Time
	Wall  func() time.Time
	After func(time.Duration) <-chan time.Time
}

func (o *LeaseOptions) setDefaults() {
	if o.Retry == 0 {
		o.Retry = 5 * time.Second
	}
	if o.TTL == 0 {
		o.TTL = s3.DefaultLeaseTTL
	}
	if o.Margin == 0 {
		o.Margin = o.TTL / 4
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Wall == nil {
		o.Wall = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// errNotYetHeld fences a store until its lease is held.
var errNotYetHeld = errors.New("writer lease not yet held")

// LeaseKeeper holds the bucket's writer lease for a mount (or a command)
// and keeps renewing it. The store may change the cold tier only while the
// lease is held and valid: the keeper fences it before the lease could
// expire unrenewed by this host's clock, and when another writer takes it
// over; hot-tier writes go on, nothing is lost. A renewal that fails is
// retried, and the store resumes once one succeeds. A nil LeaseKeeper (no
// cold tier, or read-only) holds nothing.
type LeaseKeeper struct {
	holder string
	o      LeaseOptions

	// mu guards the fields below.
	mu       sync.Mutex
	held     *s3.Lease
	renewed  time.Time // wall clock, for people
	lost     string
	probed   bool
	coldFrom time.Time // Now: no cold changes before (after a take-over)
	onHeld   *s3.Lease // the lease OnHeld was called for
}

// HolderID names this holder: name is the host name and the hot-tier
// file's absolute path, for people; id is random, created once beside the
// hot-tier file (hotPath + ".id", mode 0600) and kept, so the same store
// restarting is the same holder while a clone of the host (same name, same
// path, its own files) is not.
//
// The id file appears whole or not at all: the id is written to a
// temporary file, synced, and linked into place (a link never replaces an
// existing file, so of two processes starting at once both read the
// winner's). An empty id file, which only a crash of an older version
// while creating it leaves, named no lease: it is replaced.
func HolderID(hotPath string) (name, id string, err error) {
	host, _ := os.Hostname()
	abs, err := filepath.Abs(hotPath)
	if err != nil {
		return "", "", err
	}
	path := abs + ".id"
	for range 3 {
		raw, err := os.ReadFile(path)
		if err == nil && len(strings.TrimSpace(string(raw))) > 0 {
			id = strings.TrimSpace(string(raw))
			if _, herr := hex.DecodeString(id); herr != nil || len(id) != 32 {
				return "", "", fmt.Errorf("writer id %s: not 32 hex digits; remove it to make a new one", path)
			}
			return host + ":" + abs, id, nil
		}
		if err == nil {
			// Empty: no id was ever written, so no lease carries it.
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", "", fmt.Errorf("writer id: %w", err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", "", fmt.Errorf("writer id: %w", err)
		}
		if err := createID(path); err != nil {
			return "", "", fmt.Errorf("writer id: %w", err)
		}
	}
	return "", "", fmt.Errorf("writer id %s: could not be read or created", path)
}

// createID writes a new random id to path, unless path exists (then
// another process made it first and it is left alone).
func createID(path string) error {
	var b [16]byte
	rand.Read(b[:])
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, werr := f.WriteString(hex.EncodeToString(b[:]) + "\n")
	if err := errors.Join(werr, f.Chmod(0o600), f.Sync(), f.Close()); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// KeepLease takes the bucket's writer lease. The store is fenced until the
// lease is held. A live holder elsewhere refuses it (unless TakeOver), and
// so does a store that ignores conditional puts (unless AssumeSoleWriter).
// Without Wait (a mount), when S3 cannot be reached or another holder's
// lease looks expired and must first be watched for its TTL, KeepLease
// returns at once and the lease is sought in the background: hot reads and
// writes need no S3.
func KeepLease(ctx context.Context, o LeaseOptions) (*LeaseKeeper, error) {
	o.setDefaults()
	name, id, err := HolderID(o.HotPath)
	if err != nil {
		return nil, err
	}
	k := &LeaseKeeper{holder: name, o: o}
	o.Fence.Fence(errNotYetHeld)
	opts := s3.LeaseOptions{
		Holder: name, ID: id, PID: os.Getpid(), TTL: o.TTL, TakeOver: o.TakeOver, Wait: o.Wait,
		Now: o.Now, Wall: o.Wall, After: o.After,
		Watching: func(holder string, ttl time.Duration) {
			o.Log.Warn("the writer lease of another holder looks expired: watching it before taking it; no archival or cold deletes until then",
				"op", "lease", "holder", holder, "watch", ttl)
			if o.Watching != nil {
				o.Watching(holder, ttl)
			}
		},
	}
	lease, err := k.acquire(ctx, opts)
	switch {
	case err == nil:
	case o.Wait:
		return nil, err
	case errors.Is(err, s3.ErrLeaseUnconfirmed):
		o.Log.Warn("writer lease not yet held; no archival or cold deletes until it is", "op", "lease", "err", err)
	case backend.IsTransient(err):
		o.Log.Warn("S3 unreachable: mounting without the writer lease; no archival or cold deletes until it is held", "op", "lease", "err", err)
	default:
		return nil, err
	}
	if lease != nil {
		k.hold(ctx, lease)
	}
	go func() {
		opts.Wait = true
		for lease == nil {
			select {
			case <-ctx.Done():
				return
			case <-o.After(o.Retry):
			}
			l, err := k.acquire(ctx, opts)
			switch {
			case err == nil:
				lease = l
				k.hold(ctx, l)
			case ctx.Err() != nil:
				return
			case !backend.IsTransient(err):
				o.Log.Error("writer lease not taken: this mount stays without archival and cold deletes", "op", "lease", "err", err)
				k.mu.Lock()
				k.lost = oneLine(err)
				k.mu.Unlock()
				o.Fence.Fence(err)
				return
			}
		}
		k.renew(ctx, lease)
	}()
	return k, nil
}

// acquire checks once that the store honours conditional puts, then takes
// the lease.
func (k *LeaseKeeper) acquire(ctx context.Context, opts s3.LeaseOptions) (*s3.Lease, error) {
	k.mu.Lock()
	probed := k.probed
	k.mu.Unlock()
	if !probed {
		err := k.o.S3.ProbeConditionalPuts(ctx)
		switch {
		case errors.Is(err, s3.ErrConditionalPutsIgnored) && k.o.AssumeSoleWriter:
			k.o.Log.Warn("the S3 store ignores conditional puts: the writer lease cannot keep another writable host out (assume_sole_writer is set)", "op", "lease", "err", err)
		case errors.Is(err, s3.ErrConditionalPutsIgnored):
			return nil, fmt.Errorf("%w; refusing to write to a bucket another host might write too: use --read-only, or set [storage.s3] assume_sole_writer = true if no other host ever mounts this bucket and prefix writable", err)
		case err != nil:
			return nil, err
		}
		k.mu.Lock()
		k.probed = true
		k.mu.Unlock()
	}
	return k.o.S3.AcquireLease(ctx, opts)
}

// hold records a lease just taken and lets the store change the cold tier
// until its deadline: at once, or, after a take-over, only a TTL later,
// when the previous holder has surely stopped.
func (k *LeaseKeeper) hold(ctx context.Context, l *s3.Lease) {
	from := k.o.Now()
	if prev := l.TookOver(); prev != "" {
		from = from.Add(l.TTL())
		k.o.Log.Warn("took the writer lease over: archival and cold deletes start once the previous holder has surely stopped",
			"op", "lease", "previous", prev, "wait", l.TTL())
	}
	k.mu.Lock()
	k.held, k.renewed, k.lost, k.coldFrom = l, k.o.Wall(), "", from
	k.mu.Unlock()
	k.o.Log.Info("writer lease held", "op", "lease", "holder", k.holder)
	wait := from.Sub(k.o.Now())
	// At once when there is no wait: the caller may write when KeepLease
	// returns.
	allowed := wait <= 0 && k.allow(l)
	go func() {
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-k.o.After(wait):
			}
			allowed = k.allow(l)
		}
		if allowed {
			k.started(ctx, l)
		}
	}()
}

// started calls OnHeld for l, once: when the store is first allowed to
// write under l, at the end of hold's wait, or, when the lease's deadline
// had passed by then (renewals failing), after the renewal that allows it.
func (k *LeaseKeeper) started(ctx context.Context, l *s3.Lease) {
	k.mu.Lock()
	done := k.onHeld == l
	k.onHeld = l
	k.mu.Unlock()
	if !done && k.o.OnHeld != nil {
		k.o.OnHeld(ctx, l, func() bool { return k.holding(l) })
	}
}

// holding reports whether l is still held and valid, and its take-over
// wait is over.
func (k *LeaseKeeper) holding(l *s3.Lease) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.o.Now()
	return k.held == l && k.lost == "" && !now.Before(k.coldFrom) && now.Before(l.ValidUntil().Add(-k.o.Margin))
}

// allow lets the store change the cold tier until the lease's deadline,
// unless the lease was lost or a take-over's wait is not over. It reports
// whether it did.
func (k *LeaseKeeper) allow(l *s3.Lease) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	now, until := k.o.Now(), l.ValidUntil().Add(-k.o.Margin)
	if k.lost != "" || now.Before(k.coldFrom) || !now.Before(until) {
		return false
	}
	k.o.Fence.AllowColdUntil(until)
	return true
}

// renew renews every TTL/4 until ctx ends or the lease is taken over. Before
// the lease could expire unrenewed (its deadline, less the margin), the
// store is fenced; a later successful renewal lets it resume.
func (k *LeaseKeeper) renew(ctx context.Context, lease *s3.Lease) {
	o := k.o
	every := lease.TTL() / 4
	lastTry := o.Now()
	expired := false
	for {
		now := o.Now()
		deadline := lease.ValidUntil().Add(-o.Margin)
		wait := every - now.Sub(lastTry)
		if !expired {
			wait = min(wait, deadline.Sub(now))
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-o.After(wait):
			}
			now = o.Now()
		}
		if !expired && !now.Before(deadline) {
			expired = true
			err := fmt.Errorf("writer lease not renewed in time: it could expire (renewals failing since %s)", k.lastRenewal().Format(time.RFC3339))
			o.Log.Error("no more archival or cold deletes until the writer lease is renewed", "op", "lease", "err", err)
			o.Fence.Fence(err)
		}
		if now.Sub(lastTry) < every {
			continue
		}
		lastTry = now
		timeout := every
		if left := deadline.Sub(now); left > 0 && !expired {
			timeout = min(timeout, left)
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		err := lease.Renew(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, s3.ErrLeaseHeld):
			o.Log.Error("writer lease lost: no more archival or cold deletes from this mount", "op", "lease", "err", err)
			k.mu.Lock()
			k.lost = oneLine(err)
			k.mu.Unlock()
			o.Fence.Fence(err)
			return
		case err != nil:
			o.Log.Warn("could not renew the writer lease; retrying", "op", "lease", "err", err)
			continue
		}
		k.mu.Lock()
		k.renewed = o.Wall()
		k.mu.Unlock()
		if k.allow(lease) {
			if expired {
				o.Log.Info("writer lease renewed: archival and cold deletes resume", "op", "lease")
			}
			go k.started(ctx, lease)
		}
		expired = false
	}
}

// Deadline is when this holder stops changing the cold tier unless the
// lease is renewed first (LeaseOptions.Now); zero while no lease is held.
func (k *LeaseKeeper) Deadline() time.Time {
	k.mu.Lock()
	l := k.held
	k.mu.Unlock()
	if l == nil {
		return time.Time{}
	}
	return l.ValidUntil().Add(-k.o.Margin)
}

func (k *LeaseKeeper) lastRenewal() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.renewed.UTC()
}

// Release gives the lease up, if it is held.
func (k *LeaseKeeper) Release() {
	if k == nil {
		return
	}
	k.mu.Lock()
	l := k.held
	k.mu.Unlock()
	if l != nil {
		k.o.Fence.Fence(errors.New("writer lease released"))
		l.Release(context.Background())
	}
}

// Describe adds the lease to a status.
func (k *LeaseKeeper) Describe(st *control.Status) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.held == nil && k.lost == "":
		return
	case k.lost != "":
		st.Lease = "lost: " + k.lost
	default:
		st.Lease = "held"
		st.LeaseExpires = k.renewed.Add(k.held.TTL()).UTC()
	}
	st.LeaseHolder = k.holder
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
