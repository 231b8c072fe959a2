package local

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

var (
	bucketMeta       = []byte("meta")
	bucketSums       = []byte("sums")
	bucketChunks     = []byte("chunks")
	bucketPending    = []byte("pending")
	bucketGarbage    = []byte("garbage")
	bucketCold       = []byte("cold")
	bucketTombstones = []byte("tombstones")
	bucketColdSums   = []byte("coldsums")
	bucketFormat     = []byte("scribefs")
	keyFormat        = []byte("format")
)

// formatVersion is written into every file; a file of another version is
// refused rather than guessed at.
const formatVersion = "scribefs-hot-1"

// batchBytes bounds the dirty pages of one write transaction.
const batchBytes = 32 << 20

// gcBatch is how many chunks one garbage-collection transaction frees.
const gcBatch = 256

// ErrLocked is returned by Open when another process holds the file.
var ErrLocked = errors.New("locked by another process")

// Options configure Open.
type Options struct {
	// LockTimeout bounds the wait for bbolt's file lock (default 1s), so a
	// second process fails fast instead of hanging.
	LockTimeout time.Duration
	// ReadOnly opens the file without write access; writes fail with
	// backend.ErrReadOnly.
	ReadOnly bool
	// Now is the clock that stamps a version's write time (default
	// time.Now): the archival policy ages segments by it, so a tiered
	// store and its hot tier share one clock.
	Now func() time.Time
}

// Backend is the bbolt hot tier. It implements backend.Backend, and also
// offers what only a local store can: pinning versions, in-place mtime
// changes, and renames.
type Backend struct {
	db   *bolt.DB
	path string
	ro   bool
	now  func() time.Time

	// mu guards pins and usage.
	mu    sync.Mutex
	pins  map[uint64]pinState // generation -> its readers
	usage int64               // sum of current segment sizes

	gcKick chan struct{}
	gcDone chan struct{}
	stop   chan struct{}
}

var _ backend.Backend = (*Backend)(nil)

// Open opens or creates the hot tier at path.
func Open(path string, opts Options) (*Backend, error) {
	if opts.LockTimeout == 0 {
		opts.LockTimeout = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("hot tier %s: %w", path, err)
		}
	}
	if err := checkFile(path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        opts.LockTimeout,
		ReadOnly:       opts.ReadOnly,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("hot tier %s: %w (is a scribefs mount using it?)", path, ErrLocked)
		}
		return nil, fmt.Errorf("hot tier %s: not a usable scribefs hot-tier file: %v", path, err)
	}
	b := &Backend{db: db, path: path, ro: opts.ReadOnly, now: opts.Now, pins: map[uint64]pinState{},
		gcKick: make(chan struct{}, 1), gcDone: make(chan struct{}), stop: make(chan struct{})}
	if err := b.init(); err != nil {
		db.Close()
		return nil, err
	}
	if opts.ReadOnly {
		close(b.gcDone)
	} else {
		go b.gcLoop()
		b.kickGC()
	}
	return b, nil
}

// checkFile refuses a file that is not a bbolt database before bbolt opens
// it, so a damaged or foreign file is never modified. bbolt's meta page
// carries the magic 0xED0CDAED right after the 16-byte page header.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hot tier %s: %w", path, err)
	}
	defer f.Close()
	var hdr [64]byte
	n, _ := io.ReadFull(f, hdr[:])
	if n == 0 {
		return nil // empty file: bbolt initialises it
	}
	if n < 20 || binary.LittleEndian.Uint32(hdr[16:20]) != 0xED0CDAED {
		return fmt.Errorf("hot tier %s: not a scribefs hot-tier file (no bbolt header); refusing to touch it", path)
	}
	return nil
}

func (b *Backend) init() error {
	fail := func(err error) error { return fmt.Errorf("hot tier %s: %v", b.path, err) }
	if b.ro {
		err := b.db.View(func(tx *bolt.Tx) error {
			fb := tx.Bucket(bucketFormat)
			if fb == nil {
				return fmt.Errorf("not a scribefs hot-tier file")
			}
			if v := fb.Get(keyFormat); string(v) != formatVersion {
				return fmt.Errorf("format %q, this scribefs reads %q", v, formatVersion)
			}
			return b.sumUsage(tx)
		})
		if err != nil {
			return fail(err)
		}
		return nil
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		if fb := tx.Bucket(bucketFormat); fb != nil {
			if v := fb.Get(keyFormat); string(v) != formatVersion {
				return fmt.Errorf("format %q, this scribefs reads %q; refusing to change it", v, formatVersion)
			}
		} else {
			if k, _ := tx.Cursor().First(); k != nil {
				return fmt.Errorf("bbolt file of another program (no scribefs format marker); refusing to change it")
			}
			fb, err := tx.CreateBucket(bucketFormat)
			if err != nil {
				return err
			}
			if err := fb.Put(keyFormat, []byte(formatVersion)); err != nil {
				return err
			}
		}
		for _, name := range [][]byte{bucketMeta, bucketSums, bucketChunks, bucketPending, bucketGarbage, bucketCold, bucketColdSums, bucketTombstones, bucketChanges, bucketDeleted, bucketUploading} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		// Versions whose writer died before publishing them are garbage now.
		pend := tx.Bucket(bucketPending)
		garb := tx.Bucket(bucketGarbage)
		var gens [][]byte
		pend.ForEach(func(k, _ []byte) error { gens = append(gens, append([]byte(nil), k...)); return nil })
		for _, g := range gens {
			if err := garb.Put(g, nil); err != nil {
				return err
			}
			if err := pend.Delete(g); err != nil {
				return err
			}
		}
		return b.sumUsage(tx)
	})
	if err != nil {
		return fail(err)
	}
	return nil
}

func (b *Backend) sumUsage(tx *bolt.Tx) error {
	var total int64
	mb := tx.Bucket(bucketMeta)
	if mb == nil {
		return nil
	}
	err := mb.ForEach(func(_, v []byte) error {
		m, err := decodeMeta(v)
		if err != nil {
			return err
		}
		total += m.size
		return nil
	})
	b.usage = total
	return err
}

// Path is the bbolt file.
func (b *Backend) Path() string { return b.path }

// Space reports the size and free bytes of the file system holding the
// file.
func (b *Backend) Space() (total, free uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(b.path), &st); err != nil {
		return 0, 0, err
	}
	return st.Blocks * uint64(st.Bsize), st.Bavail * uint64(st.Bsize), nil
}

// Usage is the number of bytes of current segments in the hot tier.
func (b *Backend) Usage() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.usage
}

func (b *Backend) addUsage(d int64) {
	b.mu.Lock()
	b.usage += d
	b.mu.Unlock()
}

// Close stops background work and closes the file.
func (b *Backend) Close() error {
	select {
	case <-b.stop:
		return nil
	default:
	}
	close(b.stop)
	<-b.gcDone
	return b.db.Close()
}

type meta struct {
	gen     uint64
	size    int64
	mtime   int64 // unix ns
	written int64 // unix ns
}

func (m meta) encode() []byte {
	v := make([]byte, 32)
	binary.BigEndian.PutUint64(v[0:], m.gen)
	binary.BigEndian.PutUint64(v[8:], uint64(m.size))
	binary.BigEndian.PutUint64(v[16:], uint64(m.mtime))
	binary.BigEndian.PutUint64(v[24:], uint64(m.written))
	return v
}

func decodeMeta(v []byte) (meta, error) {
	if len(v) != 32 {
		return meta{}, fmt.Errorf("corrupt segment record (%d bytes)", len(v))
	}
	return meta{
		gen:     binary.BigEndian.Uint64(v[0:]),
		size:    int64(binary.BigEndian.Uint64(v[8:])),
		mtime:   int64(binary.BigEndian.Uint64(v[16:])),
		written: int64(binary.BigEndian.Uint64(v[24:])),
	}, nil
}

func idKey(id segment.ID) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, uint64(id))
	return k
}

func genKey(gen uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, gen)
	return k
}

func chunkKey(gen uint64, idx int64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, gen)
	binary.BigEndian.PutUint64(k[8:], uint64(idx))
	return k
}

func (m meta) info(id segment.ID) segment.Info {
	return segment.Info{
		ID: id, Size: m.size, ModTime: time.Unix(0, m.mtime).UTC(), Tier: segment.TierHot,
		Version: strconv.FormatUint(m.gen, 10), WrittenAt: time.Unix(0, m.written).UTC(),
	}
}

func segErr(op string, id segment.ID, err error) error {
	return fmt.Errorf("hot %s segment %d: %w", op, id, err)
}

// Put implements backend.Backend.
func (b *Backend) Put(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions) (segment.Info, error) {
	return b.put(ctx, id, r, opts, nil, nil)
}

// PutIf is Put that publishes the new version only if check accepts id's
// record (see Record) in the transaction that would publish it; otherwise
// it stores nothing and fails with check's error.
func (b *Backend) PutIf(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions, check func(Record) error) (segment.Info, error) {
	return b.put(ctx, id, r, opts, nil, check)
}

// PutStream is Put for bytes that are still being produced: r blocks until
// more are available, and the data is written to the file (in pending
// transactions, invisible to readers) while the producer is still at work.
// mtime is called once, after r returned EOF and just before the version is
// published, for the mtime to record (a file's mtime may be set after its
// last write). A Read error abandons the put: nothing becomes visible.
func (b *Backend) PutStream(ctx context.Context, id segment.ID, r io.Reader, mtime func() time.Time) (segment.Info, error) {
	return b.put(ctx, id, r, backend.PutOptions{Size: -1}, mtime, nil)
}

func (b *Backend) put(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions, mtime func() time.Time, check func(Record) error) (segment.Info, error) {
	if b.ro {
		return segment.Info{}, segErr("put", id, backend.ErrReadOnly)
	}
	var (
		sum     segment.Summer
		gen     uint64
		idx     int64
		size    int64
		started bool // a pending generation exists
	)
	// abandon turns a half-written generation into garbage.
	abandon := func(err error) (segment.Info, error) {
		if started {
			b.discardPending(gen)
		}
		return segment.Info{}, segErr("put", id, err)
	}
	if err := ctx.Err(); err != nil {
		return abandon(err)
	}
	// Most puts fit in one batch: read it here, and publish it in one
	// transaction.
	cur := readBatch(r, &sum)
	if cur.err == nil && !cur.eof {
		// A larger one: read the next batch while committing this one,
		// so that reading (and checksumming) overlaps bbolt's writes and
		// fsyncs; at most two batches are held (the unbuffered channel
		// makes the reader wait with the next one until the commit is
		// done). The reader stops at EOF, on an error, or when told to;
		// put does not return before it has, so r is not used after.
		next := make(chan batch)
		quit := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				rb := readBatch(r, &sum)
				select {
				case next <- rb:
				case <-quit:
					rb.release()
					return
				}
				if rb.eof || rb.err != nil {
					return
				}
			}
		}()
		defer func() {
			close(quit)
			<-done
			select {
			case rb := <-next:
				rb.release()
			default:
			}
		}()
		for !cur.eof && cur.err == nil {
			size += cur.n
			if err := ctx.Err(); err != nil {
				cur.release()
				return abandon(err)
			}
			if opts.Size >= 0 && size > opts.Size {
				cur.release()
				return abandon(fmt.Errorf("%w: more than the expected %d bytes", backend.ErrInvalid, opts.Size))
			}
			err := b.db.Update(func(tx *bolt.Tx) error {
				if !started {
					g, err := tx.Bucket(bucketMeta).NextSequence()
					if err != nil {
						return err
					}
					gen = g
					if err := tx.Bucket(bucketPending).Put(genKey(gen), idKey(id)); err != nil {
						return err
					}
				}
				return putChunks(tx, gen, idx, cur.chunks)
			})
			n := int64(len(cur.chunks))
			cur.release() // committed: bbolt has copied the chunks into its pages
			if err != nil {
				return abandon(err)
			}
			started = true
			idx += n
			cur = <-next
		}
	}
	defer cur.release()
	if cur.err != nil {
		return abandon(fmt.Errorf("reading data: %w", cur.err))
	}
	// The last batch: sum is complete (the reader has finished).
	if opts.Size >= 0 && sum.Size() != opts.Size {
		return abandon(fmt.Errorf("%w: got %d bytes, expected %d", backend.ErrInvalid, sum.Size(), opts.Size))
	}
	sums := sum.Sums()
	if opts.Sums != nil && !opts.Sums.Equal(sums) {
		return abandon(fmt.Errorf("%w: data does not match the expected checksums", segment.ErrChecksum))
	}
	mt := opts.ModTime
	if mtime != nil {
		mt = mtime()
	}
	return b.publish(id, gen, started, idx, cur.chunks, sum.Size(), sums, mt, check)
}

// A batch is up to batchBytes of a put's data, in pooled chunk buffers.
type batch struct {
	chunks [][]byte
	bufs   []*[]byte
	n      int64
	eof    bool // the data ends with this batch
	err    error
}

// readBatch reads the next batch of r and adds it to sum.
func readBatch(r io.Reader, sum *segment.Summer) batch {
	var b batch
	for len(b.chunks)*segment.BlockSize < batchBytes {
		bp := chunkPool.Get().(*[]byte)
		b.bufs = append(b.bufs, bp)
		buf := *bp
		n, err := backend.Fill(r, buf)
		if n > 0 {
			b.chunks = append(b.chunks, buf[:n])
			b.n += int64(n)
			sum.Write(buf[:n])
		}
		if err == io.EOF {
			b.eof = true
			break
		}
		if err != nil {
			b.err = err
			break
		}
	}
	return b
}

// release returns the batch's buffers to the pool.
func (b *batch) release() {
	for _, bp := range b.bufs {
		chunkPool.Put(bp)
	}
	b.bufs, b.chunks = nil, nil
}

// chunkPool recycles chunk buffers between batches and puts: bbolt needs a
// value only until its transaction commits.
var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, segment.BlockSize)
	return &b
}}

// discardPending turns a half-written generation into garbage. If even that
// fails, Open does it at the next start.
func (b *Backend) discardPending(gen uint64) {
	b.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketPending).Delete(genKey(gen)); err != nil {
			return err
		}
		return tx.Bucket(bucketGarbage).Put(genKey(gen), nil)
	})
	b.kickGC()
}

func putChunks(tx *bolt.Tx, gen uint64, idx int64, batch [][]byte) error {
	cb := tx.Bucket(bucketChunks)
	for i, c := range batch {
		if err := cb.Put(chunkKey(gen, idx+int64(i)), c); err != nil {
			return err
		}
	}
	return nil
}

// publish writes the last batch and points meta at the new generation, in
// one transaction.
func (b *Backend) publish(id segment.ID, gen uint64, started bool, idx int64, batch [][]byte, size int64, sums *segment.Checksums, mtime time.Time, check func(Record) error) (segment.Info, error) {
	now := b.now()
	if mtime.IsZero() {
		mtime = now
	}
	m := meta{size: size, mtime: mtime.UnixNano(), written: now.UnixNano()}
	var oldSize int64
	err := b.db.Update(func(tx *bolt.Tx) error {
		mb := tx.Bucket(bucketMeta)
		if check != nil {
			rec, err := readRecord(tx, id)
			if err != nil {
				return err
			}
			if err := check(rec); err != nil {
				return err
			}
		}
		if !started {
			g, err := mb.NextSequence()
			if err != nil {
				return err
			}
			gen = g
		} else if err := tx.Bucket(bucketPending).Delete(genKey(gen)); err != nil {
			return err
		}
		m.gen = gen
		if err := putChunks(tx, gen, idx, batch); err != nil {
			return err
		}
		sb, _ := sums.MarshalBinary()
		if err := tx.Bucket(bucketSums).Put(genKey(gen), sb); err != nil {
			return err
		}
		if old := mb.Get(idKey(id)); old != nil {
			om, err := decodeMeta(old)
			if err != nil {
				return err
			}
			oldSize = om.size
			if err := tx.Bucket(bucketGarbage).Put(genKey(om.gen), nil); err != nil {
				return err
			}
		}
		if err := mb.Put(idKey(id), m.encode()); err != nil {
			return err
		}
		return changed(tx, id)
	})
	if err != nil {
		if started {
			b.discardPending(gen)
		}
		return segment.Info{}, segErr("put", id, err)
	}
	b.addUsage(size - oldSize)
	if oldSize > 0 || started {
		b.kickGC()
	}
	info := m.info(id)
	info.Sums = sums
	return info, nil
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	var info segment.Info
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(idKey(id))
		if v == nil {
			return backend.ErrNotFound
		}
		m, err := decodeMeta(v)
		if err != nil {
			return err
		}
		info = m.info(id)
		var sums segment.Checksums
		if sb := tx.Bucket(bucketSums).Get(genKey(m.gen)); sb != nil {
			if err := sums.UnmarshalBinary(sb); err != nil {
				return err
			}
			info.Sums = &sums
		}
		return nil
	})
	if err != nil {
		return segment.Info{}, segErr("stat", id, err)
	}
	return info, nil
}

// Get implements backend.Backend. The returned reader pins the version, so
// it keeps reading the same bytes through a concurrent overwrite or delete.
func (b *Backend) Get(ctx context.Context, id segment.ID, opts backend.GetOptions) (io.ReadCloser, error) {
	if opts.Version != "" {
		// An older version is still readable while someone pins it.
		if gen, size, ok := b.repin(opts.Version); ok {
			return b.rangeReader(gen, size, opts.Offset, opts.Length), nil
		}
	}
	m, err := b.pinCurrent(id)
	if err != nil {
		return nil, segErr("get", id, err)
	}
	if opts.Version != "" && opts.Version != strconv.FormatUint(m.gen, 10) {
		b.unpin(m.gen)
		return nil, segErr("get", id, backend.ErrStale)
	}
	return b.rangeReader(m.gen, m.size, opts.Offset, opts.Length), nil
}

func (b *Backend) rangeReader(gen uint64, size, off, length int64) io.ReadCloser {
	end := size
	if length >= 0 && off+length < end {
		end = off + length
	}
	if off > end {
		off = end
	}
	return &chunkReader{b: b, gen: gen, start: off, off: off, end: end}
}

// chunkReader reads [start, end) of a generation, copying out of bbolt's
// memory. It is an io.Seeker within its range, so an upload from it can be
// retried from the beginning.
type chunkReader struct {
	b               *Backend
	gen             uint64
	start, off, end int64
	closed          bool
}

func (r *chunkReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = r.start + offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.end + offset
	}
	if abs < r.start {
		return 0, fmt.Errorf("%w: seek before start", backend.ErrInvalid)
	}
	r.off = abs
	return abs - r.start, nil
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errors.New("read of closed segment reader")
	}
	if r.off >= r.end {
		return 0, io.EOF
	}
	if int64(len(p)) > r.end-r.off {
		p = p[:r.end-r.off]
	}
	n, err := r.b.readAt(r.gen, p, r.off)
	r.off += int64(n)
	return n, err
}

func (r *chunkReader) Close() error {
	if !r.closed {
		r.closed = true
		r.b.unpin(r.gen)
	}
	return nil
}

// readAt fills p from the generation's chunks starting at off, all in one
// view transaction. The caller bounds p to the segment's size.
func (b *Backend) readAt(gen uint64, p []byte, off int64) (int, error) {
	n := 0
	err := b.db.View(func(tx *bolt.Tx) error {
		cb := tx.Bucket(bucketChunks)
		for n < len(p) {
			idx := (off + int64(n)) / segment.BlockSize
			in := (off + int64(n)) % segment.BlockSize
			c := cb.Get(chunkKey(gen, idx))
			if c == nil || int64(len(c)) <= in {
				return fmt.Errorf("generation %d: chunk %d missing: %w", gen, idx, backend.ErrStale)
			}
			n += copy(p[n:], c[in:])
		}
		return nil
	})
	return n, err
}

// ReadAt reads from a pinned version (see Pin) without a reader object: the
// filesystem's hot read path, one view transaction per call.
func (b *Backend) ReadAt(version string, p []byte, off int64) (int, error) {
	gen, size, ok := b.pinned(version)
	if !ok {
		return 0, backend.ErrStale
	}
	if off >= size {
		return 0, io.EOF
	}
	short := false
	if int64(len(p)) > size-off {
		p, short = p[:size-off], true
	}
	n, err := b.readAt(gen, p, off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// PinCurrent pins the current version of a segment and describes it: its
// bytes stay readable (through ReadAt or Get with that Version) until release
// is called, even if the segment is overwritten, archived or deleted
// meanwhile.
func (b *Backend) PinCurrent(id segment.ID) (segment.Info, func(), error) {
	m, err := b.pinCurrent(id)
	if err != nil {
		return segment.Info{}, nil, segErr("pin", id, err)
	}
	return m.info(id), sync.OnceFunc(func() { b.unpin(m.gen) }), nil
}

// pinCurrent pins id's current generation. The pin is taken before the
// generation is confirmed still current: the garbage collector frees only
// generations no segment points at and skips pinned ones, so once the
// confirmation succeeds the chunks cannot be freed under the reader. (Checking
// first and pinning after would leave a window for an overwrite and a GC
// pass in between.)
func (b *Backend) pinCurrent(id segment.ID) (meta, error) {
	for attempt := 0; ; attempt++ {
		m, err := b.currentMeta(id)
		if err != nil {
			return meta{}, err
		}
		b.pin(m.gen, m.size)
		again, err := b.currentMeta(id)
		if err == nil && again.gen == m.gen {
			return again, nil
		}
		b.unpin(m.gen)
		switch {
		case err != nil:
			return meta{}, err
		case attempt == 4:
			return meta{}, fmt.Errorf("%w: overwritten while being opened", backend.ErrStale)
		}
	}
}

func (b *Backend) currentMeta(id segment.ID) (m meta, err error) {
	err = b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(idKey(id))
		if v == nil {
			return backend.ErrNotFound
		}
		m, err = decodeMeta(v)
		return err
	})
	return m, err
}

// pinState counts a generation's readers and remembers its size, so a
// reader of an overwritten version still knows where it ends.
type pinState struct {
	n    int
	size int64
}

func (b *Backend) pin(gen uint64, size int64) {
	b.mu.Lock()
	p := b.pins[gen]
	b.pins[gen] = pinState{n: p.n + 1, size: size}
	b.mu.Unlock()
}

func (b *Backend) unpin(gen uint64) {
	b.mu.Lock()
	p := b.pins[gen]
	p.n--
	last := p.n <= 0
	if last {
		delete(b.pins, gen)
	} else {
		b.pins[gen] = p
	}
	b.mu.Unlock()
	if last {
		b.kickGC()
	}
}

// repin adds a reader to a version that is pinned already, atomically (a
// separate check and pin could race with the last release and the GC).
func (b *Backend) repin(version string) (gen uint64, size int64, ok bool) {
	gen, err := strconv.ParseUint(version, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.pins[gen]
	if !ok || p.n <= 0 {
		return 0, 0, false
	}
	p.n++
	b.pins[gen] = p
	return gen, p.size, true
}

func (b *Backend) pinned(version string) (gen uint64, size int64, ok bool) {
	gen, err := strconv.ParseUint(version, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	b.mu.Lock()
	p, ok := b.pins[gen]
	b.mu.Unlock()
	return gen, p.size, ok && p.n > 0
}

func (b *Backend) isPinned(gen uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pins[gen].n > 0
}

// Delete implements backend.Backend.
func (b *Backend) Delete(ctx context.Context, id segment.ID, ifVersion string) error {
	if b.ro {
		return segErr("delete", id, backend.ErrReadOnly)
	}
	var size int64
	err := b.db.Update(func(tx *bolt.Tx) error {
		mb := tx.Bucket(bucketMeta)
		v := mb.Get(idKey(id))
		if v == nil {
			return backend.ErrNotFound
		}
		m, err := decodeMeta(v)
		if err != nil {
			return err
		}
		if ifVersion != "" && ifVersion != strconv.FormatUint(m.gen, 10) {
			return backend.ErrStale
		}
		size = m.size
		if err := tx.Bucket(bucketGarbage).Put(genKey(m.gen), nil); err != nil {
			return err
		}
		if err := mb.Delete(idKey(id)); err != nil {
			return err
		}
		return changed(tx, id)
	})
	if err != nil {
		return segErr("delete", id, err)
	}
	b.addUsage(-size)
	b.kickGC()
	return nil
}

// SetModTime changes the user-visible mtime in place; the version stays.
func (b *Backend) SetModTime(ctx context.Context, id segment.ID, mtime time.Time) error {
	if b.ro {
		return segErr("set mtime of", id, backend.ErrReadOnly)
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		mb := tx.Bucket(bucketMeta)
		v := mb.Get(idKey(id))
		if v == nil {
			return backend.ErrNotFound
		}
		m, err := decodeMeta(v)
		if err != nil {
			return err
		}
		m.mtime = mtime.UnixNano()
		if err := mb.Put(idKey(id), m.encode()); err != nil {
			return err
		}
		return changed(tx, id)
	})
	if err != nil {
		return segErr("set mtime of", id, err)
	}
	return nil
}

// Rename moves segment from to id to in one transaction, replacing to. No
// bytes move: chunks belong to the generation, not the id.
func (b *Backend) Rename(ctx context.Context, from, to segment.ID) error {
	if b.ro {
		return segErr("rename", from, backend.ErrReadOnly)
	}
	var freed int64
	err := b.db.Update(func(tx *bolt.Tx) error {
		mb := tx.Bucket(bucketMeta)
		v := mb.Get(idKey(from))
		if v == nil {
			return backend.ErrNotFound
		}
		if from == to {
			return nil
		}
		val := append([]byte(nil), v...)
		if old := mb.Get(idKey(to)); old != nil {
			om, err := decodeMeta(old)
			if err != nil {
				return err
			}
			freed = om.size
			if err := tx.Bucket(bucketGarbage).Put(genKey(om.gen), nil); err != nil {
				return err
			}
		}
		if err := mb.Put(idKey(to), val); err != nil {
			return err
		}
		if err := mb.Delete(idKey(from)); err != nil {
			return err
		}
		if err := changed(tx, from); err != nil {
			return err
		}
		return changed(tx, to)
	})
	if err != nil {
		return segErr("rename", from, err)
	}
	if freed > 0 {
		b.addUsage(-freed)
		b.kickGC()
	}
	return nil
}

// List implements backend.Backend. Listed Infos carry no Sums; Stat has
// them.
func (b *Backend) List(ctx context.Context, fn func(segment.Info) error) error {
	err := b.listBatches(ctx, bucketMeta, func(k, v []byte) (segment.Info, error) {
		m, err := decodeMeta(v)
		return m.info(segment.ID(binary.BigEndian.Uint64(k))), err
	}, fn)
	if err != nil {
		return fmt.Errorf("hot list: %w", err)
	}
	return nil
}

// listBatches walks an id-keyed bucket in ascending order, reading 1000
// entries per short view transaction and calling fn outside it, so a slow
// caller (a FUSE readdir, say) never holds a transaction open, which would
// stall bbolt's remapping for writers.
func (b *Backend) listBatches(ctx context.Context, name []byte, decode func(k, v []byte) (segment.Info, error), fn func(segment.Info) error) error {
	var after []byte
	for {
		var batch []segment.Info
		err := b.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(name).Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.First()
			} else if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
			for ; k != nil && len(batch) < 1000; k, v = c.Next() {
				info, err := decode(k, v)
				if err != nil {
					return err
				}
				batch = append(batch, info)
			}
			return nil
		})
		if err != nil || len(batch) == 0 {
			return err
		}
		for _, info := range batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(info); err != nil {
				return err
			}
		}
		after = idKey(batch[len(batch)-1].ID)
	}
}

func (b *Backend) kickGC() {
	select {
	case b.gcKick <- struct{}{}:
	default:
	}
}

// gcLoop frees the chunks of garbage generations that no reader pins.
func (b *Backend) gcLoop() {
	defer close(b.gcDone)
	for {
		select {
		case <-b.stop:
			return
		case <-b.gcKick:
		}
		for {
			select {
			case <-b.stop:
				return
			default:
			}
			more, err := b.gcOnce()
			if err != nil || !more {
				break
			}
		}
	}
}

// gcOnce frees up to gcBatch chunks; more reports whether work remains.
func (b *Backend) gcOnce() (more bool, err error) {
	err = b.db.Update(func(tx *bolt.Tx) error {
		gb := tx.Bucket(bucketGarbage)
		cb := tx.Bucket(bucketChunks)
		freed := 0
		var done [][]byte
		gc := gb.Cursor()
		for k, _ := gc.First(); k != nil && freed < gcBatch; k, _ = gc.Next() {
			gen := binary.BigEndian.Uint64(k)
			if b.isPinned(gen) {
				continue
			}
			c := cb.Cursor()
			prefix := genKey(gen)
			var keys [][]byte
			for ck, _ := c.Seek(prefix); ck != nil && bytes.HasPrefix(ck, prefix) && freed+len(keys) < gcBatch; ck, _ = c.Next() {
				keys = append(keys, append([]byte(nil), ck...))
			}
			for _, ck := range keys {
				if err := cb.Delete(ck); err != nil {
					return err
				}
			}
			freed += len(keys)
			if ck, _ := c.Seek(prefix); ck == nil || !bytes.HasPrefix(ck, prefix) {
				done = append(done, append([]byte(nil), k...))
			} else {
				more = true
			}
		}
		for _, k := range done {
			if err := tx.Bucket(bucketSums).Delete(k); err != nil {
				return err
			}
			if err := gb.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return more, err
}

// GarbageChunks counts chunks not reachable from any segment; tests use it
// to check that crashes and overwrites leave nothing behind.
func (b *Backend) GarbageChunks() (int, error) {
	n := 0
	err := b.db.View(func(tx *bolt.Tx) error {
		live := map[uint64]bool{}
		tx.Bucket(bucketMeta).ForEach(func(_, v []byte) error {
			m, err := decodeMeta(v)
			if err == nil {
				live[m.gen] = true
			}
			return nil
		})
		return tx.Bucket(bucketChunks).ForEach(func(k, _ []byte) error {
			if !live[binary.BigEndian.Uint64(k)] {
				n++
			}
			return nil
		})
	})
	return n, err
}

// WaitGC blocks until no unpinned garbage remains (tests and compaction).
func (b *Backend) WaitGC(ctx context.Context) error {
	for {
		more, err := b.gcOnce()
		if err != nil {
			return err
		}
		if !more {
			var left bool
			b.db.View(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketGarbage).ForEach(func(k, _ []byte) error {
					if !b.isPinned(binary.BigEndian.Uint64(k)) {
						left = true
					}
					return nil
				})
			})
			if !left {
				return nil
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
