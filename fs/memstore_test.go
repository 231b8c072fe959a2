package fs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// memStore is a Store in memory for tests: a map under a mutex. Open returns
// a reader of an immutable snapshot, so pinning is real; Put honours
// MaxSegmentBytes and the exact size.
type memStore struct {
	spoolDir string
	max      int64

	mu    sync.Mutex
	segs  map[segment.ID]memSegment
	gen   int
	calls map[string]int // operation → count

	readAts atomic.Int64 // ReadAt calls on readers: data fetched

	readOnly  bool                  // set before mounting
	failPut   atomic.Pointer[error] // when set, Put fails with it
	streaming atomic.Int64          // PutStream calls in progress
}

// setFailPut makes Put fail with err (nil: succeed again).
func (s *memStore) setFailPut(err error) {
	if err == nil {
		s.failPut.Store(nil)
		return
	}
	s.failPut.Store(&err)
}

type memSegment struct {
	data []byte // never modified after Put
	info segment.Info
}

func newMemStore(spoolDir string, max int64) *memStore {
	return &memStore{spoolDir: spoolDir, max: max, segs: make(map[segment.ID]memSegment), calls: make(map[string]int)}
}

func (s *memStore) count(op string) {
	s.calls[op]++
}

// Calls returns how often op was called.
func (s *memStore) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

func (s *memStore) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("stat")
	seg, ok := s.segs[id]
	if !ok {
		return segment.Info{}, fmt.Errorf("stat %d: %w", id, backend.ErrNotFound)
	}
	return seg.info, nil
}

func (s *memStore) List(ctx context.Context, fn func(segment.Info) error) error {
	s.mu.Lock()
	s.count("list")
	infos := make([]segment.Info, 0, len(s.segs))
	for _, seg := range s.segs {
		infos = append(infos, seg.info)
	}
	s.mu.Unlock()
	slices.SortFunc(infos, func(a, b segment.Info) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	// fn is called without the lock: it may block on the reader of the
	// directory, which may call Stat meanwhile.
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) Open(ctx context.Context, id segment.ID) (Reader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("open")
	seg, ok := s.segs[id]
	if !ok {
		return nil, fmt.Errorf("open %d: %w", id, backend.ErrNotFound)
	}
	return &memReader{r: bytes.NewReader(seg.data), info: seg.info, store: s}, nil
}

type memReader struct {
	r     *bytes.Reader
	info  segment.Info
	store *memStore
}

func (r *memReader) ReadAt(p []byte, off int64) (int, error) {
	r.store.readAts.Add(1)
	return r.r.ReadAt(p, off)
}
func (r *memReader) Info() segment.Info { return r.info }
func (r *memReader) Close() error       { return nil }

func (s *memStore) Put(ctx context.Context, id segment.ID, r io.Reader, size int64, mtime time.Time) (segment.Info, error) {
	if err := s.failPut.Load(); err != nil {
		return segment.Info{}, fmt.Errorf("put %d: %w", id, *err)
	}
	if size > s.max {
		return segment.Info{}, fmt.Errorf("put %d: %w", id, backend.ErrTooLarge)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return segment.Info{}, fmt.Errorf("put %d: %w: %v", id, backend.ErrInvalid, err)
	}
	if n, _ := r.Read(make([]byte, 1)); n != 0 {
		return segment.Info{}, fmt.Errorf("put %d: more than %d bytes: %w", id, size, backend.ErrInvalid)
	}
	return s.store(id, data, mtime), nil
}

func (s *memStore) PutStream(ctx context.Context, id segment.ID, r io.Reader, mtime func() time.Time) (segment.Info, error) {
	s.mu.Lock()
	s.count("putstream")
	s.mu.Unlock()
	if err := s.failPut.Load(); err != nil {
		return segment.Info{}, fmt.Errorf("put %d: %w", id, *err)
	}
	s.streaming.Add(1)
	defer s.streaming.Add(-1)
	data, err := io.ReadAll(r)
	if err != nil {
		return segment.Info{}, fmt.Errorf("put %d: %w", id, err)
	}
	if int64(len(data)) > s.max {
		return segment.Info{}, fmt.Errorf("put %d: %w", id, backend.ErrTooLarge)
	}
	return s.store(id, data, mtime()), nil
}

// put stores a segment directly, as another process using the store would.
func (s *memStore) put(id segment.ID, data []byte, mtime time.Time) segment.Info {
	return s.store(id, bytes.Clone(data), mtime)
}

// store keeps data, which nobody else may modify.
func (s *memStore) store(id segment.ID, data []byte, mtime time.Time) segment.Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("put")
	if mtime.IsZero() {
		mtime = time.Now()
	}
	s.gen++
	info := segment.Info{ID: id, Size: int64(len(data)), ModTime: mtime, Tier: segment.TierHot,
		Version: strconv.Itoa(s.gen), WrittenAt: time.Now()}
	s.segs[id] = memSegment{data: data, info: info}
	return info
}

// get returns the stored bytes of a segment.
func (s *memStore) get(id segment.ID) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seg, ok := s.segs[id]
	return seg.data, ok
}

// ids returns the stored ids, ascending.
func (s *memStore) ids() []segment.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []segment.ID
	for id := range s.segs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (s *memStore) info(id segment.ID) (segment.Info, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seg, ok := s.segs[id]
	return seg.info, ok
}

func (s *memStore) Delete(ctx context.Context, id segment.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("delete")
	if _, ok := s.segs[id]; !ok {
		return fmt.Errorf("delete %d: %w", id, backend.ErrNotFound)
	}
	delete(s.segs, id)
	return nil
}

func (s *memStore) Rename(ctx context.Context, from, to segment.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("rename")
	seg, ok := s.segs[from]
	if !ok {
		return fmt.Errorf("rename %d: %w", from, backend.ErrNotFound)
	}
	delete(s.segs, from)
	seg.info.ID = to
	s.segs[to] = seg
	return nil
}

func (s *memStore) SetModTime(ctx context.Context, id segment.ID, mtime time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("setmodtime")
	seg, ok := s.segs[id]
	if !ok {
		return fmt.Errorf("setmodtime %d: %w", id, backend.ErrNotFound)
	}
	seg.info.ModTime = mtime
	s.segs[id] = seg
	return nil
}

func (s *memStore) MaxSegmentBytes() int64 { return s.max }
func (s *memStore) SpoolDir() string       { return s.spoolDir }

func (s *memStore) ReadOnly() bool { return s.readOnly }

func (s *memStore) Space() (total, free uint64, err error) {
	return 10 << 30, 4 << 30, nil
}

var _ Store = (*memStore)(nil)
