package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/cache"
	"github.com/scribefs/scribefs/segment"
)

// Config holds the store's policy. Zero values take the documented defaults.
type Config struct {
	// MaxSegmentBytes bounds a segment's size (default 5 TiB).
	MaxSegmentBytes int64
	// HotMaxBytes is the hot tier's budget; above it the archiver moves the
	// least recently written segments out first (default 10 GiB).
	HotMaxBytes int64
	// SpoolDir stages files open for writing (default: "spool" beside the
	// hot-tier file).
	SpoolDir string
	// ArchiveAfter is how long after it was written a segment moves to the
	// cold tier. WriteThrough makes Put return only once S3 holds it.
	ArchiveAfter time.Duration
	WriteThrough bool
	// CheckInterval is how often the archiver looks for work (default 5m).
	CheckInterval time.Duration
	// Refresh is how often the index is reconciled with the bucket listing
	// (default 60s).
	Refresh time.Duration
	// ReadAhead is the most cold bytes prefetched ahead of a sequential
	// reader (default 96 MiB), in spans of FetchSpan (default 8 MiB) with at
	// most FetchParallel spans in flight (default 6: 48 MiB of buffers, which
	// the memory bound of cache + 100 MiB leaves room for).
	ReadAhead     int64
	FetchSpan     int64
	FetchParallel int
	// PrefetchSegments is how many of the following small cold segments
	// (in id order, each at most FetchSpan) are prefetched once segments are
	// opened one after the other in id order, as a ledger replay or a cat,
	// cp or tar over the directory does; 0 disables it.
	PrefetchSegments int
	// FullWait bounds how long a write waits for the archiver to make room
	// when the hot tier is over HotMaxBytes (default 30s).
	FullWait time.Duration
	// ArchiveParallel bounds concurrent uploads of the archiver (default 4).
	ArchiveParallel int
	// BackgroundSync leaves learning the bucket to Run (a mount): List then
	// answers from the index at once instead of first listing the bucket.
	BackgroundSync bool
	// ReadOnly refuses every change.
	ReadOnly bool
	// Now is the clock the archival policy reads: a segment's age and
	// last use (default time.Now; tests inject one instead of sleeping).
	Now func() time.Time
	// Health checks the cold tier with one attempt; nil when there is none.
	Health func(ctx context.Context) error
	Logger *slog.Logger
	// VerifyMerkle: a Reader of a cold segment whose cold tier records a
	// Merkle root for it (backend.MerkleRoots: a Scribe Ledger sidecar)
	// checks the root when it is read whole from the start, and fails the
	// read of its last bytes with a MerkleError on a mismatch.
	VerifyMerkle bool
}

func (c *Config) setDefaults(hot Hot) {
	if c.MaxSegmentBytes == 0 {
		c.MaxSegmentBytes = 5 << 40
	}
	if c.HotMaxBytes == 0 {
		c.HotMaxBytes = 10 << 30
	}
	if c.SpoolDir == "" {
		dir := os.TempDir()
		if p, ok := hot.(interface{ Path() string }); ok {
			dir = filepath.Dir(p.Path())
		}
		c.SpoolDir = filepath.Join(dir, "spool")
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = 5 * time.Minute
	}
	if c.Refresh == 0 {
		c.Refresh = time.Minute
	}
	if c.ReadAhead == 0 {
		c.ReadAhead = 96 << 20
	}
	if c.FetchSpan == 0 {
		c.FetchSpan = 8 << 20
	}
	if c.FetchParallel == 0 {
		c.FetchParallel = 6
	}
	if c.FullWait == 0 {
		c.FullWait = 30 * time.Second
	}
	if c.ArchiveParallel == 0 {
		c.ArchiveParallel = 4
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// ErrNotWrittenThrough is returned (wrapped, with the cause) by a
// write-through Put whose new version is stored in the hot tier, durably,
// but could not be uploaded: it is the current version, and the archiver
// uploads it later.
var ErrNotWrittenThrough = errors.New("stored in the hot tier, but write-through to the cold tier failed")

// parts are what the store's components share, assembled once by New:
// the tiers, the index, the policy, the per-segment cold locks, the
// counters and the fence. Each field is set once, or guards itself.
type parts struct {
	hot   Hot
	index Index
	cold  backend.Backend // nil: hot tier only
	cache *cache.Blocks
	cfg   Config
	log   *slog.Logger

	// locks serialise the changes this store makes to each segment's
	// object in the cold tier (see the package doc).
	locks segmentLocks

	// gate says whether this store may change the cold tier now (it holds
	// the bucket's writer lease), and cancels the changes in flight when
	// it may no longer.
	gate coldGate

	stats Counters
}

// Store is the tiered segment store. It routes each operation to the tiers
// and makes the transitions of a segment's record that readers and writers
// ask for (transitions.go); its components do the rest, each with one job:
// the archiver moves segments hot to cold and admits writes into a full
// hot tier, the reconciler keeps the index in line with the bucket and
// carries out deferred deletes, and the fetcher reads cold blocks through
// the cache. Safe for concurrent use.
type Store struct {
	*parts
	arch  *archiver
	recon *reconciler
	fetch *fetcher
}

// Fence stops every change to the cold tier (archival, write-through,
// cold deletes and their replay) with reason, and cancels those in flight:
// an upload or delete being sent fails with reason, leaving the segment as
// it was. Hot reads and writes go on. A mount calls it when its writer
// lease was taken over or is about to expire unrenewed.
func (s *Store) Fence(reason error) { s.gate.fence(reason) }

// Unfence lets the store change the cold tier again, with no time limit.
func (s *Store) Unfence() { s.gate.allow(time.Time{}) }

// AllowColdUntil lets the store change the cold tier again, but only before
// until by Config.Now: the writer lease was renewed and is valid until then.
// From until on, every change about to start or commit is refused as if
// fenced, even if Fence is never called; changes already sent are
// cancelled only by Fence.
func (s *Store) AllowColdUntil(until time.Time) { s.gate.allow(until) }

// New assembles a store from a hot tier, the index kept beside it, and a
// cold tier (nil for none). The caller keeps ownership of the backends and
// closes them after the store.
func New(hot Hot, index Index, cold backend.Backend, blocks *cache.Blocks, cfg Config) (*Store, error) {
	cfg.setDefaults(hot)
	if cold == nil {
		cfg.WriteThrough = false
	}
	if !cfg.ReadOnly {
		if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
			return nil, fmt.Errorf("spool dir %s: %w", cfg.SpoolDir, err)
		}
	}
	if blocks == nil {
		blocks = cache.New(0)
	}
	p := &parts{hot: hot, index: index, cold: cold, cache: blocks, cfg: cfg, log: cfg.Logger}
	_, trusted := index.Reconciled()
	return &Store{
		parts: p,
		arch:  &archiver{parts: p, lastUse: newLRU[segment.ID, time.Time](lastUseMax)},
		recon: &reconciler{parts: p, indexTrusted: trusted, syncedCh: make(chan struct{})},
		fetch: &fetcher{parts: p, fetchSem: make(chan struct{}, cfg.FetchParallel), inflight: map[cache.Key]*prefetchCall{}, noSums: newLRU[versionKey, struct{}](noSumsMax)},
	}, nil
}

// ReadOnly reports whether the store refuses every change (Config.ReadOnly):
// the one switch the mount and the commands follow.
func (s *Store) ReadOnly() bool { return s.cfg.ReadOnly }

// HasCold reports whether a cold tier is configured.
func (s *Store) HasCold() bool { return s.cold != nil }

// MaxSegmentBytes implements fs.Store.
func (s *Store) MaxSegmentBytes() int64 { return s.cfg.MaxSegmentBytes }

// SpoolDir implements fs.Store.
func (s *Store) SpoolDir() string { return s.cfg.SpoolDir }

// Space reports the hot tier disk's size and free bytes.
func (s *Store) Space() (total, free uint64, err error) { return s.hot.Space() }

// Health checks the cold tier (one attempt). With no cold tier it checks
// nothing and succeeds.
func (s *Store) Health(ctx context.Context) error {
	if s.cfg.Health == nil {
		return nil
	}
	return s.cfg.Health(ctx)
}

// Stat describes a segment: the hot copy when there is one, else the cold.
func (s *Store) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	info, err := s.hot.Stat(ctx, id)
	if err == nil || !errors.Is(err, backend.ErrNotFound) {
		return info, err
	}
	return s.recon.lookup(ctx, id)
}

// List calls fn for every segment of both tiers, ascending by id, a segment
// in both tiers once (its hot copy). Neither tier is held in memory whole.
func (s *Store) List(ctx context.Context, fn func(segment.Info) error) error {
	if s.cold != nil && !s.recon.synced.Load() && !s.cfg.BackgroundSync {
		// First listing of this process: learn the bucket now. If S3 is
		// down, list what the index knows rather than fail.
		if err := s.recon.reconcileOnce(ctx); err != nil {
			s.log.Warn("listing from the index: the bucket could not be listed", "op", "list", "err", err)
		}
	}
	if s.cold == nil {
		return s.hot.List(ctx, fn)
	}
	return s.index.Live(ctx, fn)
}

// puller turns a callback listing into a pull iterator.
type puller struct {
	next func() (segment.Info, bool)
	stop func()
	e    error
}

var errStopList = errors.New("listing stopped")

func pull(list func(yield func(segment.Info) error) error) *puller {
	p := &puller{}
	seq := func(yield func(segment.Info) bool) {
		err := list(func(i segment.Info) error {
			if !yield(i) {
				return errStopList
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopList) {
			p.e = err
		}
	}
	p.next, p.stop = iter.Pull(iter.Seq[segment.Info](seq))
	return p
}

func (p *puller) err() error { return p.e }

// Put stores a new version of a segment in the hot tier (and, with
// write-through, in the cold tier before returning). The new version is
// durable when Put returns nil.
func (s *Store) Put(ctx context.Context, id segment.ID, r io.Reader, size int64, mtime time.Time) (segment.Info, error) {
	return s.put(ctx, id, r, size, func(lr io.Reader) (segment.Info, error) {
		return s.hot.Put(ctx, id, lr, backend.PutOptions{Size: size, ModTime: mtime})
	})
}

// PutStream is Put for bytes still being produced (a file being written
// sequentially): r blocks until more are available and returns EOF at the
// end; mtime is asked for after that. The hot tier writes the bytes as they
// come, so little is left to do when the producer finishes; nothing is
// visible before then, and a Read error stores nothing.
func (s *Store) PutStream(ctx context.Context, id segment.ID, r io.Reader, mtime func() time.Time) (segment.Info, error) {
	rr := &roomReader{r: r, room: func(n int64) error { return s.arch.waitForRoom(ctx, id, n) }}
	return s.put(ctx, id, rr, -1, func(lr io.Reader) (segment.Info, error) {
		return s.hot.PutStream(ctx, id, lr, mtime)
	})
}

// roomReader makes room in the hot tier as a stream of unknown size grows:
// every roomStep bytes it asks for room for what it has read so far (a plain
// Put asks once, for its whole size).
type roomReader struct {
	r     io.Reader
	room  func(n int64) error
	read  int64
	asked int64
}

const roomStep = 32 << 20

func (rr *roomReader) Read(p []byte) (int, error) {
	if rr.read-rr.asked >= roomStep {
		if err := rr.room(rr.read); err != nil {
			return 0, err
		}
		rr.asked = rr.read
	}
	n, err := rr.r.Read(p)
	rr.read += int64(n)
	return n, err
}

// put checks and makes room for a put of size bytes (-1: unknown), stores r
// in the hot tier with store, and writes it through when configured.
func (s *Store) put(ctx context.Context, id segment.ID, r io.Reader, size int64, store func(io.Reader) (segment.Info, error)) (segment.Info, error) {
	if err := s.writable("put", id); err != nil {
		return segment.Info{}, err
	}
	if size > s.cfg.MaxSegmentBytes {
		return segment.Info{}, fmt.Errorf("put segment %d: %d bytes: %w (max %d)", id, size, backend.ErrTooLarge, s.cfg.MaxSegmentBytes)
	}
	if err := s.arch.waitForRoom(ctx, id, size); err != nil {
		return segment.Info{}, err
	}
	lr := &limitReader{r: r, left: s.cfg.MaxSegmentBytes}
	info, err := store(lr)
	if lr.over {
		return segment.Info{}, fmt.Errorf("put segment %d: %w (max %d bytes)", id, backend.ErrTooLarge, s.cfg.MaxSegmentBytes)
	}
	if err != nil {
		return segment.Info{}, err
	}
	s.arch.touch(id)
	if s.cfg.WriteThrough {
		if err := s.arch.archive(ctx, id, info.Version); err != nil {
			return info, fmt.Errorf("put segment %d: %w: %w", id, ErrNotWrittenThrough, err)
		}
		if now, err := s.Stat(ctx, id); err == nil && now.Tier == segment.TierCold {
			return now, nil // archived: the cold object's description
		}
		// Still hot, or replaced or deleted since: the put itself
		// succeeded, and this is what it stored.
		return info, nil
	}
	return info, nil
}

// limitReader fails once more than left bytes are read.
type limitReader struct {
	r    io.Reader
	left int64
	over bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		l.over = true
		return n, backend.ErrTooLarge
	}
	return n, err
}

// Synced is closed once the index has been reconciled with a full listing
// of the bucket.
func (s *Store) Synced() <-chan struct{} { return s.recon.syncedCh }

// coldWritable checks, before a change to the cold tier starts or commits,
// that this store may still make it.
func (p *parts) coldWritable(op string, id segment.ID) error {
	_, _, err := p.gate.check(op, id, p.cfg.Now())
	return err
}

// coldCtx checks that a change to the cold tier may start and returns the
// context to send it with: it is cancelled, with the fence's error as its
// cause, when the store is fenced or its deadline passes unrenewed (so
// neither a retry nor the rest of a multipart upload goes out after it).
// Call stop when the change is done.
func (p *parts) coldCtx(ctx context.Context, op string, id segment.ID) (cctx context.Context, stop func(), err error) {
	fenced, until, err := p.gate.check(op, id, p.cfg.Now())
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithCancelCause(ctx)
	go func() {
		for {
			var (
				timer  *time.Timer
				expiry <-chan time.Time
			)
			if !until.IsZero() {
				timer = time.NewTimer(until.Sub(p.cfg.Now()))
				expiry = timer.C
			}
			done := false
			select {
			case <-fenced:
			case <-expiry:
			case <-cctx.Done():
				done = true
			}
			if timer != nil {
				timer.Stop()
			}
			if done {
				return
			}
			// Fenced, or the deadline came: renewed meanwhile?
			var err error
			if fenced, until, err = p.gate.check(op, id, p.cfg.Now()); err != nil {
				cancel(err)
				return
			}
		}
	}()
	return cctx, func() { cancel(nil) }, nil
}

// fencedCause is err, or the fence's error if the change was cancelled by
// a fence (cctx from coldCtx).
func fencedCause(cctx context.Context, err error) error {
	if err == nil || cctx.Err() == nil {
		return err
	}
	if cause := context.Cause(cctx); cause != nil && errors.Is(cause, backend.ErrReadOnly) {
		return cause
	}
	return err
}

// coldGate is the fence: whether the store may change the cold tier.
type coldGate struct {
	// mu guards the fields below.
	mu     sync.Mutex
	why    error         // set: fenced
	until  time.Time     // not zero: fenced from then on (Config.Now)
	fenced chan struct{} // closed by fence: cancels changes in flight
}

func (g *coldGate) fence(reason error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.why = reason
	if g.fenced == nil {
		g.fenced = make(chan struct{})
	}
	select {
	case <-g.fenced:
	default:
		close(g.fenced)
	}
}

func (g *coldGate) allow(until time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.why, g.until = nil, until
	if g.fenced != nil {
		select {
		case <-g.fenced:
			g.fenced = nil // a fresh channel for the next fence
		default:
		}
	}
}

// check says whether a change may start (or commit) at now, and returns
// the channel that a fence closes and the deadline.
func (g *coldGate) check(op string, id segment.ID, now time.Time) (<-chan struct{}, time.Time, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	why := g.why
	if why == nil && !g.until.IsZero() && !now.Before(g.until) {
		why = fmt.Errorf("writer lease not renewed in time (valid until %s)", g.until.Format(time.RFC3339))
	}
	if why != nil {
		return nil, time.Time{}, fmt.Errorf("%s segment %d: cold tier fenced: %v: %w", op, id, why, backend.ErrReadOnly)
	}
	if g.fenced == nil {
		g.fenced = make(chan struct{})
	}
	return g.fenced, g.until, nil
}

func (p *parts) writable(op string, id segment.ID) error {
	if p.cfg.ReadOnly {
		return fmt.Errorf("%s segment %d: %w", op, id, backend.ErrReadOnly)
	}
	return nil
}

// update is one transition of one record (see Index.Update).
func (p *parts) update(id segment.ID, fn func(r *backend.Record) error) (backend.Record, error) {
	recs, err := p.index.Update([]segment.ID{id}, func(rs []*backend.Record) error { return fn(rs[0]) })
	if err != nil {
		return backend.Record{}, err
	}
	return recs[0], nil
}

// replayLocked carries out id's pending cold delete, if it has one; the
// caller holds id's lock, so nothing else changes the object meanwhile.
func (p *parts) replayLocked(ctx context.Context, id segment.ID) (bool, error) {
	rec, err := p.index.Record(id)
	if err != nil || rec.Tomb == nil {
		return false, err
	}
	cctx, stop, err := p.coldCtx(ctx, "delete", id)
	if err != nil {
		return false, err
	}
	err = fencedCause(cctx, p.cold.Delete(cctx, id, *rec.Tomb))
	stop()
	if err != nil && !errors.Is(err, backend.ErrNotFound) && !errors.Is(err, backend.ErrStale) {
		return false, err
	}
	want := *rec.Tomb
	_, err = p.update(id, func(r *backend.Record) error {
		if r.Tomb != nil && *r.Tomb == want {
			r.Tomb = nil
		}
		return nil
	})
	return err == nil, err
}
