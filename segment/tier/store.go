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
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/local"
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
	// Health checks the cold tier with one attempt; nil when there is none.
	Health func(ctx context.Context) error
	Logger *slog.Logger
}

func (c *Config) setDefaults(hotPath string) {
	if c.MaxSegmentBytes == 0 {
		c.MaxSegmentBytes = 5 << 40
	}
	if c.HotMaxBytes == 0 {
		c.HotMaxBytes = 10 << 30
	}
	if c.SpoolDir == "" {
		c.SpoolDir = filepath.Join(filepath.Dir(hotPath), "spool")
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Store is the tiered segment store. Safe for concurrent use.
type Store struct {
	hot   *local.Backend
	index *local.Index
	cold  backend.Backend // nil: hot tier only
	cache *cache.Blocks
	cfg   Config
	log   *slog.Logger

	// synced is set once the index has been reconciled with a full bucket
	// listing; before that, cold lookups that miss the index ask S3.
	synced   atomic.Bool
	syncedCh chan struct{}
	// indexTrusted: an earlier process reconciled the index with the
	// bucket, so a miss in it means "no such segment" even before this
	// process's first listing (other writers' new objects appear at the
	// next refresh).
	indexTrusted bool

	fetchSem chan struct{} // bounds concurrent cold range GETs

	// mu guards inflight: cold blocks being fetched by a prefetch.
	mu       sync.Mutex
	inflight map[cache.Key]*prefetchCall
	// follow detects cold segments opened in id order (see followOpen).
	follow struct {
		sync.Mutex
		last  segment.ID // the segment opened last
		next  segment.ID // the one after it in the index
		run   int        // how many were opened in order, up to last
		ahead segment.ID // prefetched up to here during this run
	}

	reconciling singleflight.Group

	// lastUse is when each hot segment was last opened or written by this
	// process (segment.ID -> time.Time); the archiver moves the least
	// recently used out first when the hot tier is over budget.
	lastUse sync.Map

	// lastArchiveErr is the archiver's most recent failure, nil after a
	// success; a write waiting for room gives up early on a transient one.
	lastArchiveErr atomic.Pointer[error]
	making         singleflight.Group

	// noSums remembers cold versions known to carry no block checksums.
	noSums sync.Map

	// archiving serialises archival per segment.
	archiving sync.Map // segment.ID -> struct{}

	// fenced, when set, is why this store may no longer change the cold
	// tier (its writer lease was taken over).
	fenced atomic.Pointer[error]

	stats Counters
}

// Fence stops every change to the cold tier (archival, cold deletes) with
// reason; hot reads and writes go on. A mount calls it when another writer
// takes its lease over.
func (s *Store) Fence(reason error) { s.fenced.Store(&reason) }

// Unfence lets the store change the cold tier again (its writer lease is
// now held).
func (s *Store) Unfence() { s.fenced.Store(nil) }

func (s *Store) coldWritable(op string, id segment.ID) error {
	if p := s.fenced.Load(); p != nil {
		return fmt.Errorf("%s segment %d: cold tier fenced: %v: %w", op, id, *p, backend.ErrReadOnly)
	}
	return nil
}

// Counters are cumulative operation counts for status and metrics.
type Counters struct {
	ColdFetches, ColdFetchBytes, Archived, ArchiveErrors, ChecksumErrors atomic.Int64
}

// New assembles a store. cold may be nil. The caller keeps ownership of the
// backends and closes them after the store.
func New(hot *local.Backend, cold backend.Backend, blocks *cache.Blocks, cfg Config) (*Store, error) {
	cfg.setDefaults(hot.Path())
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
	_, trusted := hot.Index().Reconciled()
	return &Store{
		indexTrusted: trusted,
		hot:          hot, index: hot.Index(), cold: cold, cache: blocks, cfg: cfg, log: cfg.Logger,
		fetchSem: make(chan struct{}, cfg.FetchParallel),
		inflight: map[cache.Key]*prefetchCall{},
		syncedCh: make(chan struct{}),
	}, nil
}

// HasCold reports whether a cold tier is configured.
func (s *Store) HasCold() bool { return s.cold != nil }

// MaxSegmentBytes implements fs.Store.
func (s *Store) MaxSegmentBytes() int64 { return s.cfg.MaxSegmentBytes }

// SpoolDir implements fs.Store.
func (s *Store) SpoolDir() string { return s.cfg.SpoolDir }

// CacheStats reports the block cache's counters.
func (s *Store) CacheStats() cache.Stats { return s.cache.Stats() }

// HotUsage is the bytes of segments in the hot tier.
func (s *Store) HotUsage() int64 { return s.hot.Usage() }

// Counters returns the store's cumulative counters.
func (s *Store) Counters() *Counters { return &s.stats }

// Space reports the hot tier disk's size and free bytes.
func (s *Store) Space() (total, free uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(s.hot.Path()), &st); err != nil {
		return 0, 0, err
	}
	return st.Blocks * uint64(st.Bsize), st.Bavail * uint64(st.Bsize), nil
}

// Health checks the cold tier (one attempt). With no cold tier it checks
// nothing and succeeds.
func (s *Store) Health(ctx context.Context) error {
	if s.cfg.Health == nil {
		return nil
	}
	return s.cfg.Health(ctx)
}

func (s *Store) writable(op string, id segment.ID) error {
	if s.cfg.ReadOnly {
		return fmt.Errorf("%s segment %d: %w", op, id, backend.ErrReadOnly)
	}
	return nil
}

// Stat describes a segment: the hot copy when there is one, else the cold.
func (s *Store) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	info, err := s.hot.Stat(ctx, id)
	if err == nil || !errors.Is(err, backend.ErrNotFound) {
		return info, err
	}
	return s.coldStat(ctx, id)
}

// coldStat answers from the index, asking S3 only while the index has not
// yet been reconciled with a full listing.
func (s *Store) coldStat(ctx context.Context, id segment.ID) (segment.Info, error) {
	notFound := fmt.Errorf("segment %d: %w", id, backend.ErrNotFound)
	if s.cold == nil {
		return segment.Info{}, notFound
	}
	info, ok, err := s.index.Get(id)
	if err != nil {
		return segment.Info{}, err
	}
	if ok && info.Unresolved {
		return s.resolve(ctx, info)
	}
	if ok {
		return info, nil
	}
	if s.synced.Load() || s.indexTrusted {
		return segment.Info{}, notFound
	}
	if tomb, err := s.index.Tombstones(); err == nil {
		if _, dead := tomb[id]; dead {
			return segment.Info{}, notFound
		}
	}
	info, err = s.cold.Stat(ctx, id)
	if err != nil {
		return segment.Info{}, err
	}
	s.index.Put(info)
	return info, nil
}

// List calls fn for every segment of both tiers, ascending by id, a segment
// in both tiers once (its hot copy). Neither tier is held in memory whole.
func (s *Store) List(ctx context.Context, fn func(segment.Info) error) error {
	hot := pull(func(yield func(segment.Info) error) error { return s.hot.List(ctx, yield) })
	defer hot.stop()
	if s.cold != nil && !s.synced.Load() && !s.cfg.BackgroundSync {
		// First listing of this process: learn the bucket now. If S3 is
		// down, list what the index knows rather than fail.
		if err := s.reconcileOnce(ctx); err != nil {
			s.log.Warn("listing from the index: the bucket could not be listed", "op", "list", "err", err)
		}
	}
	cold := pull(func(yield func(segment.Info) error) error {
		if s.cold == nil {
			return nil
		}
		return s.index.List(yield)
	})
	defer cold.stop()
	h, hok := hot.next()
	c, cok := cold.next()
	for hok || cok {
		var out segment.Info
		switch {
		case hok && (!cok || h.ID <= c.ID):
			out = h
			if cok && c.ID == h.ID {
				c, cok = cold.next()
			}
			h, hok = hot.next()
		default:
			out = c
			c, cok = cold.next()
		}
		if err := fn(out); err != nil {
			return err
		}
	}
	if err := hot.err(); err != nil {
		return err
	}
	return cold.err()
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
	rr := &roomReader{r: r, room: func(n int64) error { return s.waitForRoom(ctx, id, n) }}
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
	if err := s.waitForRoom(ctx, id, size); err != nil {
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
	s.touch(id)
	if s.cfg.WriteThrough {
		if err := s.Archive(ctx, id); err != nil {
			return info, fmt.Errorf("put segment %d: stored in the hot tier, but write-through to the cold tier failed: %w", id, err)
		}
		return s.Stat(ctx, id)
	}
	return info, nil
}

// waitForRoom holds a write while the hot tier is over its budget and the
// archiver can make room: it archives the least recently used segments and
// retries until FullWait. With the cold tier unreachable as well it fails
// at once with ErrNoSpace (ENOSPC on the mount); nothing stored is touched.
func (s *Store) waitForRoom(ctx context.Context, id segment.ID, size int64) error {
	if s.cold == nil || s.cfg.WriteThrough {
		return nil
	}
	need := max(size, 0)
	deadline := time.Now().Add(s.cfg.FullWait)
	for {
		used := s.hot.Usage()
		if used+need <= s.cfg.HotMaxBytes || used == 0 {
			return nil
		}
		s.making.Do("room", func() (any, error) { return s.archivePass(ctx, need), nil })
		if s.hot.Usage()+need <= s.cfg.HotMaxBytes {
			return nil
		}
		var why error
		if p := s.lastArchiveErr.Load(); p != nil && backend.IsTransient(*p) {
			why = *p
		} else if time.Now().After(deadline) {
			why = fmt.Errorf("archiving did not free enough within %v", s.cfg.FullWait)
		}
		if why != nil {
			err := fmt.Errorf("put segment %d: %w: hot tier full (%d of %d bytes, %d more needed) and the cold tier cannot take more: %v",
				id, backend.ErrNoSpace, s.hot.Usage(), s.cfg.HotMaxBytes, need, why)
			s.log.Error("write refused: hot tier full", "op", "put", "segment", id, "err", err)
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// touch records a use of a hot segment for the LRU order.
func (s *Store) touch(id segment.ID) { s.lastUse.Store(id, time.Now()) }

// lastUsed is when id was last used here, else when it was written.
func (s *Store) lastUsed(i segment.Info) time.Time {
	if v, ok := s.lastUse.Load(i.ID); ok {
		return v.(time.Time)
	}
	return i.WrittenAt
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

// Delete removes a segment from every tier. A cold delete that cannot be
// carried out now (S3 unavailable) is recorded as a tombstone and replayed
// later; the segment is gone for readers at once either way.
func (s *Store) Delete(ctx context.Context, id segment.ID) error {
	if err := s.writable("delete", id); err != nil {
		return err
	}
	found := false
	switch err := s.hot.Delete(ctx, id, ""); {
	case err == nil:
		found = true
	case !errors.Is(err, backend.ErrNotFound):
		return err
	}
	if s.cold != nil {
		info, err := s.coldStat(ctx, id)
		switch {
		case err == nil:
			found = true
			if err := s.deleteCold(ctx, id, info.Version); err != nil {
				return err
			}
		case errors.Is(err, backend.ErrNotFound):
		case backend.IsTransient(err) && found:
			// Cannot even tell whether S3 holds an older copy: record a
			// delete of any version, so the listing never brings it back.
			if err := s.index.AddTombstone(id, ""); err != nil {
				return err
			}
		default:
			return err
		}
	}
	if !found {
		return fmt.Errorf("delete segment %d: %w", id, backend.ErrNotFound)
	}
	return nil
}

// deleteCold deletes one cold version, falling back to a tombstone when S3
// is unavailable.
func (s *Store) deleteCold(ctx context.Context, id segment.ID, version string) error {
	if err := s.coldWritable("delete", id); err != nil {
		return err
	}
	err := s.cold.Delete(ctx, id, version)
	switch {
	case err == nil, errors.Is(err, backend.ErrNotFound), errors.Is(err, backend.ErrStale):
		// Stale: someone else wrote a newer object; it is theirs to keep.
		return s.index.Delete(id)
	case backend.IsTransient(err):
		s.log.Warn("cold delete deferred", "op", "delete", "segment", id, "err", err)
		if err := s.index.AddTombstone(id, version); err != nil {
			return err
		}
		return s.index.Delete(id)
	default:
		return err
	}
}

// ReplayTombstones carries out deletes recorded while S3 was unavailable.
func (s *Store) ReplayTombstones(ctx context.Context) (done int, err error) {
	if s.cold == nil || s.cfg.ReadOnly || s.fenced.Load() != nil {
		return 0, nil
	}
	tombs, err := s.index.Tombstones()
	if err != nil {
		return 0, err
	}
	for id, version := range tombs {
		err := s.cold.Delete(ctx, id, version)
		if err != nil && !errors.Is(err, backend.ErrNotFound) && !errors.Is(err, backend.ErrStale) {
			return done, err
		}
		if err := s.index.RemoveTombstone(id); err != nil {
			return done, err
		}
		done++
	}
	return done, nil
}

// Rename makes from available as to and removes from. A hot segment moves
// in one bbolt transaction; a cold one is copied into the hot tier under its
// new id first. Readers see the old state or the new, never a mix.
func (s *Store) Rename(ctx context.Context, from, to segment.ID) error {
	if err := s.writable("rename", from); err != nil {
		return err
	}
	if from == to {
		_, err := s.Stat(ctx, from)
		return err
	}
	err := s.hot.Rename(ctx, from, to)
	switch {
	case err == nil:
	case errors.Is(err, backend.ErrNotFound):
		r, err := s.Open(ctx, from)
		if err != nil {
			return err
		}
		info := r.Info()
		_, err = s.hot.Put(ctx, to, io.NewSectionReader(r, 0, info.Size), backend.PutOptions{Size: info.Size, ModTime: info.ModTime})
		r.Close()
		if err != nil {
			return err
		}
	default:
		return err
	}
	// from's cold copy, if any, must go too.
	if s.cold != nil {
		if info, err := s.coldStat(ctx, from); err == nil {
			return s.deleteCold(ctx, from, info.Version)
		}
	}
	return nil
}

// SetModTime changes a segment's user-visible mtime. For a cold segment the
// new mtime is kept in the index (the object is not rewritten).
func (s *Store) SetModTime(ctx context.Context, id segment.ID, mtime time.Time) error {
	if err := s.writable("set mtime of", id); err != nil {
		return err
	}
	err := s.hot.SetModTime(ctx, id, mtime)
	if !errors.Is(err, backend.ErrNotFound) {
		return err
	}
	info, err := s.coldStat(ctx, id)
	if err != nil {
		return err
	}
	info.ModTime = mtime
	if info.Sums == nil {
		if full, ok, _ := s.index.Get(id); ok {
			info.Sums = full.Sums
		}
	}
	return s.index.Put(info)
}

// Archive moves one segment from the hot tier to the cold tier: upload,
// verify size and checksums against what the server returns, record it in
// the index, then drop the hot copy, only if it was not overwritten
// meanwhile. A segment already cold is left alone.
func (s *Store) Archive(ctx context.Context, id segment.ID) error {
	if s.cold == nil {
		return fmt.Errorf("archive segment %d: no cold tier configured", id)
	}
	if err := s.writable("archive", id); err != nil {
		return err
	}
	if err := s.coldWritable("archive", id); err != nil {
		return err
	}
	if _, busy := s.archiving.LoadOrStore(id, struct{}{}); busy {
		return nil
	}
	defer s.archiving.Delete(id)
	info, err := s.hot.Stat(ctx, id)
	if errors.Is(err, backend.ErrNotFound) {
		if _, cerr := s.coldStat(ctx, id); cerr == nil {
			return nil // already cold
		}
		return err
	}
	if err != nil {
		return err
	}
	r, err := s.hot.Get(ctx, id, backend.GetOptions{Length: -1, Version: info.Version})
	if err != nil {
		return err
	}
	defer r.Close()
	coldInfo, err := s.cold.Put(ctx, id, r, backend.PutOptions{Size: info.Size, ModTime: info.ModTime, Sums: info.Sums})
	if err != nil {
		s.stats.ArchiveErrors.Add(1)
		return fmt.Errorf("archive segment %d: %w", id, err)
	}
	if coldInfo.Size != info.Size {
		s.stats.ArchiveErrors.Add(1)
		return fmt.Errorf("archive segment %d: cold tier stored %d bytes, expected %d", id, coldInfo.Size, info.Size)
	}
	coldInfo.Sums, coldInfo.ModTime, coldInfo.WrittenAt = info.Sums, info.ModTime, info.WrittenAt
	coldInfo.Tier = segment.TierCold
	if err := s.index.Put(coldInfo); err != nil {
		return err
	}
	s.index.RemoveTombstone(id)
	s.stats.Archived.Add(1)
	if err := s.hot.Delete(ctx, id, info.Version); err != nil && !errors.Is(err, backend.ErrStale) && !errors.Is(err, backend.ErrNotFound) {
		return err
	}
	return nil
}

// reconcileOnce reconciles unless another caller is already doing it, in
// which case it waits for that one.
func (s *Store) reconcileOnce(ctx context.Context) error {
	_, err, _ := s.reconciling.Do("reconcile", func() (any, error) {
		if s.synced.Load() {
			return nil, nil
		}
		return nil, s.Reconcile(ctx)
	})
	return err
}

// Reconcile brings the index in line with a full listing of the cold tier:
// objects other writers added appear, objects they removed disappear.
// Entries whose version did not change keep what the index knew of them
// (checksums, mtime set through scribefs).
func (s *Store) Reconcile(ctx context.Context) error {
	if s.cold == nil {
		return nil
	}
	tomb, err := s.index.Tombstones()
	if err != nil {
		return err
	}
	start := time.Now()
	// An entry the archiver recorded after the listing passed its key is
	// not gone: only entries older than this pass are dropped.
	stale := func(i segment.Info) bool { return i.WrittenAt.IsZero() || i.WrittenAt.Before(start) }
	known := pull(func(yield func(segment.Info) error) error { return s.index.List(yield) })
	defer known.stop()
	k, kok := known.next()
	var add []segment.Info
	var gone []segment.ID
	unresolved := 0
	flush := func() error {
		if len(add) > 0 {
			if err := s.index.PutBatch(add); err != nil {
				return err
			}
			add = add[:0]
		}
		return nil
	}
	err = s.cold.List(ctx, func(c segment.Info) error {
		for kok && k.ID < c.ID {
			if stale(k) {
				gone = append(gone, k.ID)
			}
			k, kok = known.next()
		}
		same := kok && k.ID == c.ID && k.Version == c.Version
		if same && k.Unresolved {
			unresolved++
		}
		if kok && k.ID == c.ID {
			k, kok = known.next()
		}
		if _, dead := tomb[c.ID]; dead || same {
			return nil
		}
		if c.Unresolved {
			unresolved++
		}
		add = append(add, c)
		if len(add) >= 1000 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	for ; kok; k, kok = known.next() {
		if stale(k) {
			gone = append(gone, k.ID)
		}
	}
	if err := known.err(); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	for _, id := range gone {
		if err := s.index.Delete(id); err != nil {
			return err
		}
	}
	if s.synced.CompareAndSwap(false, true) {
		close(s.syncedCh)
	}
	if err := s.index.MarkReconciled(start); err != nil {
		return err
	}
	if unresolved == 0 {
		return nil
	}
	return s.resolveAll(ctx)
}

// resolve asks the cold tier once for what a listing could not tell (the
// decoded size and mtime of a Scribe Ledger object) and keeps it.
func (s *Store) resolve(ctx context.Context, listed segment.Info) (segment.Info, error) {
	info, err := s.cold.Stat(ctx, listed.ID)
	if err != nil {
		return segment.Info{}, err
	}
	if err := s.index.Put(info); err != nil {
		return segment.Info{}, err
	}
	return info, nil
}

// resolveAll resolves every unresolved index entry, a few at a time.
func (s *Store) resolveAll(ctx context.Context) error {
	var todo []segment.Info
	if err := s.index.List(func(i segment.Info) error {
		if i.Unresolved {
			todo = append(todo, i)
		}
		return nil
	}); err != nil {
		return err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, 8)
	for _, info := range todo {
		sem <- struct{}{}
		wg.Add(1)
		go func(info segment.Info) {
			defer func() { <-sem; wg.Done() }()
			if _, err := s.resolve(ctx, info); err != nil && !errors.Is(err, backend.ErrNotFound) {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}(info)
	}
	wg.Wait()
	return first
}

// Synced is closed once the index has been reconciled with a full listing
// of the bucket.
func (s *Store) Synced() <-chan struct{} { return s.syncedCh }

// CleanSpool removes files left in the spool directory by a process that
// died with files open for writing. Only a mount calls it, before serving:
// those writes were never acknowledged, so nothing is lost.
func (s *Store) CleanSpool() (int, error) {
	entries, err := os.ReadDir(s.cfg.SpoolDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if e.Type().IsRegular() && os.Remove(filepath.Join(s.cfg.SpoolDir, e.Name())) == nil {
			n++
		}
	}
	return n, nil
}
