package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/segment"
)

var ctx = context.Background()

// memBackend is an in-memory backend.Backend for testing wrappers. Versions
// are generation numbers. When versionedReaders is set, its readers report
// the version they read, as the S3 backend's do.
type memBackend struct {
	versionedReaders bool

	mu   sync.Mutex // guards segs and gen
	segs map[segment.ID]memSeg
	gen  int
}

type memSeg struct {
	data    []byte
	info    segment.Info
	version string
}

func newMem(versionedReaders bool) *memBackend {
	return &memBackend{versionedReaders: versionedReaders, segs: map[segment.ID]memSeg{}}
}

func (m *memBackend) Put(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions) (segment.Info, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return segment.Info{}, err
	}
	if opts.Size >= 0 && int64(len(data)) != opts.Size {
		return segment.Info{}, fmt.Errorf("mem put %d: %w: %d bytes, declared %d", id, backend.ErrInvalid, len(data), opts.Size)
	}
	sums := segment.Sum(data)
	if opts.Sums != nil && !opts.Sums.Equal(sums) {
		return segment.Info{}, fmt.Errorf("mem put %d: %w", id, segment.ErrChecksum)
	}
	now := time.Now()
	mtime := opts.ModTime
	if mtime.IsZero() {
		mtime = now
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	v := "g" + strconv.Itoa(m.gen)
	info := segment.Info{ID: id, Size: int64(len(data)), ModTime: mtime, Tier: segment.TierHot, Version: v, Sums: sums, WrittenAt: now}
	m.segs[id] = memSeg{data: data, info: info, version: v}
	return info, nil
}

func (m *memBackend) get(id segment.ID) (memSeg, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.segs[id]
	if !ok {
		return memSeg{}, fmt.Errorf("mem segment %d: %w", id, backend.ErrNotFound)
	}
	return s, nil
}

type memReader struct {
	*bytes.Reader
	version string
}

func (r memReader) Close() error { return nil }

type versionedMemReader struct{ memReader }

func (r versionedMemReader) Version() string { return r.version }

func (m *memBackend) Get(ctx context.Context, id segment.ID, opts backend.GetOptions) (io.ReadCloser, error) {
	s, err := m.get(id)
	if err != nil {
		return nil, err
	}
	if opts.Version != "" && opts.Version != s.version {
		return nil, fmt.Errorf("mem get %d: %w", id, backend.ErrStale)
	}
	if opts.Offset < 0 {
		return nil, fmt.Errorf("mem get %d: %w: negative offset", id, backend.ErrInvalid)
	}
	n := int64(len(s.data))
	lo, hi := min(opts.Offset, n), n
	if opts.Length >= 0 && opts.Length < n-lo {
		hi = lo + opts.Length
	}
	r := memReader{bytes.NewReader(s.data[lo:hi]), s.version}
	if m.versionedReaders {
		return versionedMemReader{r}, nil
	}
	return r, nil
}

func (m *memBackend) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	s, err := m.get(id)
	return s.info, err
}

func (m *memBackend) Delete(ctx context.Context, id segment.ID, ifVersion string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.segs[id]
	if !ok {
		return fmt.Errorf("mem delete %d: %w", id, backend.ErrNotFound)
	}
	if ifVersion != "" && ifVersion != s.version {
		return fmt.Errorf("mem delete %d: %w", id, backend.ErrStale)
	}
	delete(m.segs, id)
	return nil
}

func (m *memBackend) List(ctx context.Context, fn func(segment.Info) error) error {
	m.mu.Lock()
	ids := make([]segment.ID, 0, len(m.segs))
	for id := range m.segs {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	slices.Sort(ids)
	for _, id := range ids {
		s, err := m.get(id)
		if err != nil {
			continue // deleted meanwhile
		}
		if err := fn(s.info); err != nil {
			return err
		}
	}
	return nil
}

func (m *memBackend) Close() error { return nil }

// errInjected is the transient failure the fault injector produces.
var errInjected = fmt.Errorf("injected: %w", backend.ErrUnavailable)

// faulty wraps a backend and injects failures, decided per call by its
// hooks. Calls are counted per operation and segment, so concurrent tests
// on different segments see deterministic faults.
type faulty struct {
	backend.Backend

	// before, when set, is called before each operation with its 1-based
	// call number; a non-nil error fails the call without performing it.
	before func(op string, id segment.ID, call int) error
	// breakAt, when set, returns after how many bytes the body of Get call
	// number call fails with errInjected; negative: never.
	breakAt func(id segment.ID, call int, size int) int
	// putConsumes makes a failing Put read this many bytes of its source
	// first, so a retry that does not rewind stores the wrong bytes.
	putConsumes int64

	mu    sync.Mutex // guards calls
	calls map[string]int
}

func newFaulty(b backend.Backend) *faulty { return &faulty{Backend: b, calls: map[string]int{}} }

func (f *faulty) count(op string, id segment.ID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := op + " " + id.String()
	f.calls[k]++
	return f.calls[k]
}

// callsTo returns how many times op was called for id.
func (f *faulty) callsTo(op string, id segment.ID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op+" "+id.String()]
}

func (f *faulty) fault(op string, id segment.ID) (int, error) {
	n := f.count(op, id)
	if f.before == nil {
		return n, nil
	}
	return n, f.before(op, id, n)
}

func (f *faulty) Put(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions) (segment.Info, error) {
	if _, err := f.fault("put", id); err != nil {
		io.CopyN(io.Discard, r, f.putConsumes)
		return segment.Info{}, err
	}
	return f.Backend.Put(ctx, id, r, opts)
}

func (f *faulty) Get(ctx context.Context, id segment.ID, opts backend.GetOptions) (io.ReadCloser, error) {
	call, err := f.fault("get", id)
	if err != nil {
		return nil, err
	}
	rc, err := f.Backend.Get(ctx, id, opts)
	if err != nil || f.breakAt == nil {
		return rc, err
	}
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	at := f.breakAt(id, call, len(data))
	if at < 0 || at >= len(data) {
		return withVersion(io.NopCloser(bytes.NewReader(data)), rc), nil
	}
	return withVersion(io.NopCloser(io.MultiReader(bytes.NewReader(data[:at]), errReader{errInjected})), rc), nil
}

// withVersion keeps the inner reader's Version method, if any, on a
// replacement reader.
func withVersion(r io.ReadCloser, inner io.ReadCloser) io.ReadCloser {
	if v, ok := inner.(versioned); ok {
		return struct {
			io.ReadCloser
			versioned
		}{r, v}
	}
	return r
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func (f *faulty) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	if _, err := f.fault("stat", id); err != nil {
		return segment.Info{}, err
	}
	return f.Backend.Stat(ctx, id)
}

func (f *faulty) Delete(ctx context.Context, id segment.ID, ifVersion string) error {
	if _, err := f.fault("delete", id); err != nil {
		return err
	}
	return f.Backend.Delete(ctx, id, ifVersion)
}

// List fails, when before says so, after delivering two entries.
func (f *faulty) List(ctx context.Context, fn func(segment.Info) error) error {
	_, err := f.fault("list", 0)
	if err == nil {
		return f.Backend.List(ctx, fn)
	}
	n := 0
	return f.Backend.List(ctx, func(i segment.Info) error {
		if n == 2 {
			return err
		}
		n++
		return fn(i)
	})
}

var fast = Policy{MaxRetries: 5, BaseDelay: time.Microsecond, MaxDelay: time.Millisecond}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return New(newMem(false), fast)
	}, backendtest.Options{LargeSize: 3<<20 + 5})
}

// TestConformanceFlaky runs the suite with every other call failing and
// Get bodies breaking midway: with retries, the contract still holds.
func TestConformanceFlaky(t *testing.T) {
	for _, versionedReaders := range []bool{false, true} {
		t.Run(fmt.Sprintf("versionedReaders=%v", versionedReaders), func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backend.Backend {
				return New(flaky(newMem(versionedReaders)), fast)
			}, backendtest.Options{LargeSize: 3<<20 + 5})
		})
	}
}

// flaky fails odd calls before they act (Put only for seekable sources,
// which the wrapper can retry, after consuming part of them) and breaks
// the body of every other successful Get halfway.
func flaky(b backend.Backend) *seekableOnlyPutFaults {
	f := newFaulty(b)
	f.putConsumes = 1000
	f.before = func(op string, id segment.ID, call int) error {
		if call%2 == 1 && op != "put" {
			return errInjected
		}
		return nil
	}
	f.breakAt = func(id segment.ID, call, size int) int {
		if call%4 == 2 && size > 1 {
			return size / 2
		}
		return -1
	}
	return &seekableOnlyPutFaults{f}
}

// seekableOnlyPutFaults fails the first attempt of Puts from seekable
// sources; the suite's unseekable sources cannot be retried by design.
type seekableOnlyPutFaults struct{ *faulty }

func (s *seekableOnlyPutFaults) Put(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions) (segment.Info, error) {
	if _, ok := r.(io.Seeker); ok && s.count("put-seekable", id)%2 == 1 {
		io.CopyN(io.Discard, r, s.putConsumes)
		return segment.Info{}, errInjected
	}
	return s.faulty.Backend.Put(ctx, id, r, opts)
}

type retryLog struct {
	mu      sync.Mutex
	entries []string
}

func (l *retryLog) hook(op string, id segment.ID, attempt int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, fmt.Sprintf("%s %d #%d", op, id, attempt))
}

func (l *retryLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.entries, ", ")
}

func failFirst(n int) func(string, segment.ID, int) error {
	return func(_ string, _ segment.ID, call int) error {
		if call <= n {
			return errInjected
		}
		return nil
	}
}

func TestRetriesThenSucceeds(t *testing.T) {
	mem := newMem(false)
	backendtest.MustPut(t, mem, 1, []byte("hello"))
	f := newFaulty(mem)
	f.before = failFirst(2)
	var log retryLog
	p := fast
	p.OnRetry = log.hook
	b := New(f, p)
	if _, err := b.Stat(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, 1, ""); err != nil {
		t.Fatal(err)
	}
	if got := log.String(); got != "stat 1 #1, stat 1 #2, delete 1 #1, delete 1 #2" {
		t.Fatalf("retries: %s", got)
	}
	if f.callsTo("stat", 1) != 3 || f.callsTo("delete", 1) != 3 {
		t.Fatalf("calls: stat %d, delete %d; want 3 each", f.callsTo("stat", 1), f.callsTo("delete", 1))
	}
}

func TestNonTransientNotRetried(t *testing.T) {
	for _, final := range []error{backend.ErrNotFound, backend.ErrPermission, backend.ErrInvalid, backend.ErrStale,
		segment.ErrChecksum, backend.ErrReadOnly, backend.ErrNoSpace, context.Canceled, errors.New("unclassified")} {
		mem := newMem(false)
		for id := segment.ID(1); id <= 3; id++ { // the faulty List fails after two entries
			backendtest.MustPut(t, mem, id, []byte("data"))
		}
		f := newFaulty(mem)
		f.before = func(string, segment.ID, int) error { return fmt.Errorf("final: %w", final) }
		var log retryLog
		p := fast
		p.OnRetry = log.hook
		b := New(f, p)
		_, err1 := b.Stat(ctx, 1)
		_, err2 := b.Get(ctx, 1, backend.Whole)
		_, err3 := b.Put(ctx, 1, strings.NewReader("x"), backend.PutOptions{Size: 1})
		err4 := b.Delete(ctx, 1, "")
		err5 := b.List(ctx, func(segment.Info) error { return nil })
		for i, err := range []error{err1, err2, err3, err4, err5} {
			if !errors.Is(err, final) {
				t.Errorf("%v: operation %d returned %v", final, i, err)
			}
		}
		for _, op := range []string{"stat", "get", "put", "delete"} {
			if n := f.callsTo(op, 1); n != 1 {
				t.Errorf("%v: %s called %d times, want once", final, op, n)
			}
		}
		if log.String() != "" {
			t.Errorf("%v: retried: %s", final, log.String())
		}
	}
}

func TestMaxRetriesExhausted(t *testing.T) {
	for _, max := range []int{0, 1, 3} {
		mem := newMem(false)
		backendtest.MustPut(t, mem, 1, []byte("data"))
		f := newFaulty(mem)
		f.before = failFirst(1 << 30)
		var log retryLog
		p := fast
		p.MaxRetries, p.OnRetry = max, log.hook
		_, err := New(f, p).Stat(ctx, 1)
		if !errors.Is(err, backend.ErrUnavailable) {
			t.Fatalf("max %d: %v, want ErrUnavailable", max, err)
		}
		if n := f.callsTo("stat", 1); n != max+1 {
			t.Fatalf("max %d: %d attempts, want %d", max, n, max+1)
		}
		if max > 0 && !strings.Contains(err.Error(), fmt.Sprintf("gave up after %d attempts", max+1)) {
			t.Fatalf("max %d: message %q", max, err)
		}
		if got := strings.Count(log.String(), "#"); got != max {
			t.Fatalf("max %d: OnRetry called %d times", max, got)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	r := New(newMem(false), Policy{MaxRetries: 10, BaseDelay: 10 * time.Millisecond, MaxDelay: 80 * time.Millisecond}).(*retrier)
	for n := 1; n <= 10; n++ {
		ceiling := min(10*time.Millisecond<<(n-1), 80*time.Millisecond)
		var most time.Duration
		for i := 0; i < 2000; i++ {
			d := r.backoff(n)
			if d < 0 || d > ceiling {
				t.Fatalf("retry %d: wait %v outside [0, %v]", n, d, ceiling)
			}
			most = max(most, d)
		}
		if most < ceiling/2 {
			t.Fatalf("retry %d: longest wait %v of 2000 draws, ceiling %v: not jittered over the full range", n, most, ceiling)
		}
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	mem := newMem(false)
	backendtest.MustPut(t, mem, 1, []byte("data"))
	f := newFaulty(mem)
	f.before = failFirst(1 << 30)
	b := New(f, Policy{MaxRetries: 100, BaseDelay: 10 * time.Second, MaxDelay: 10 * time.Second})
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := b.Stat(cctx, 1)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("cancelled retry returned after %v", took)
	}
	if !errors.Is(err, context.Canceled) || !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("cancelled retry: %v", err)
	}
}

func TestPutRewindsSeekableSource(t *testing.T) {
	mem := newMem(false)
	f := newFaulty(mem)
	f.before = failFirst(2)
	f.putConsumes = 700
	b := New(f, fast)
	data := backendtest.RandomBytes(1, 5000)
	src := bytes.NewReader(data)
	src.Seek(10, io.SeekStart) // Put stores from where the source stands
	if _, err := b.Put(ctx, 1, src, backend.PutOptions{Size: int64(len(data) - 10)}); err != nil {
		t.Fatal(err)
	}
	if n := f.callsTo("put", 1); n != 3 {
		t.Fatalf("%d put attempts, want 3", n)
	}
	got := readAll(t, mem, 1, backend.Whole)
	if !bytes.Equal(got, data[10:]) {
		t.Fatalf("stored %d bytes, want the %d after offset 10", len(got), len(data)-10)
	}
}

func TestPutUnseekableSingleAttempt(t *testing.T) {
	f := newFaulty(newMem(false))
	f.before = failFirst(1)
	b := New(f, fast)
	_, err := b.Put(ctx, 1, io.MultiReader(strings.NewReader("stream")), backend.PutOptions{Size: 6})
	if !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("unseekable put: %v", err)
	}
	if n := f.callsTo("put", 1); n != 1 {
		t.Fatalf("unseekable put attempted %d times", n)
	}
}

func readAll(t *testing.T, b backend.Backend, id segment.ID, o backend.GetOptions) []byte {
	t.Helper()
	r, err := b.Get(ctx, id, o)
	if err != nil {
		t.Fatalf("get %d: %v", id, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %d: %v", id, err)
	}
	return got
}

// TestGetResumesMidBody breaks every body after 100 KiB of its own and checks
// the reader hands over exactly the bytes of the range.
func TestGetResumesMidBody(t *testing.T) {
	for _, versionedReaders := range []bool{false, true} {
		mem := newMem(versionedReaders)
		data := backendtest.RandomBytes(2, 1<<20+333)
		backendtest.MustPut(t, mem, 1, data)
		f := newFaulty(mem)
		f.breakAt = func(segment.ID, int, int) int { return 100 << 10 }
		var log retryLog
		b := New(f, Policy{MaxRetries: 20, BaseDelay: time.Microsecond, MaxDelay: time.Microsecond, OnRetry: log.hook})
		for _, o := range []backend.GetOptions{backend.Whole, {Offset: 12345, Length: 500000}, {Offset: 1 << 19, Length: -1}} {
			got := readAll(t, b, 1, o)
			hi := int64(len(data))
			if o.Length >= 0 {
				hi = o.Offset + o.Length
			}
			if !bytes.Equal(got, data[o.Offset:hi]) {
				t.Fatalf("versioned=%v %+v: resumed read differs (%d bytes, want %d)", versionedReaders, o, len(got), hi-o.Offset)
			}
		}
		if !strings.Contains(log.String(), "get 1 #10") {
			t.Fatalf("versioned=%v: resumes not reported: %s", versionedReaders, log.String())
		}
	}
}

// TestGetResumeRefusesNewVersion replaces the segment while a read is
// broken: the resumed read must fail with ErrStale, not splice versions.
func TestGetResumeRefusesNewVersion(t *testing.T) {
	for _, versionedReaders := range []bool{false, true} {
		mem := newMem(versionedReaders)
		old := bytes.Repeat([]byte("o"), 1000)
		backendtest.MustPut(t, mem, 1, old)
		f := newFaulty(mem)
		f.breakAt = func(segment.ID, int, int) int { return 100 }
		b := New(f, fast)
		r, err := b.Get(ctx, 1, backend.Whole)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
		backendtest.MustPut(t, mem, 1, bytes.Repeat([]byte("n"), 1000))
		rest, err := io.ReadAll(r)
		r.Close()
		if !errors.Is(err, backend.ErrStale) {
			t.Fatalf("versioned=%v: read across a replacement: %v, want ErrStale", versionedReaders, err)
		}
		if bytes.Contains(rest, []byte("n")) {
			t.Fatalf("versioned=%v: bytes of the new version spliced in", versionedReaders)
		}
	}
}

// TestGetBudgetShared: opening and resuming draw on one retry budget.
func TestGetBudgetShared(t *testing.T) {
	mem := newMem(true)
	backendtest.MustPut(t, mem, 1, make([]byte, 1000))
	f := newFaulty(mem)
	f.before = failFirst(1)                                         // the first open fails
	f.breakAt = func(segment.ID, int, int) int { return 10 }        // every body breaks
	b := New(f, Policy{MaxRetries: 3, BaseDelay: time.Microsecond}) // open retry + 2 resumes
	r, err := b.Get(ctx, 1, backend.Whole)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "gave up after 4 attempts") {
		t.Fatalf("read: %v", err)
	}
	if len(got) != 30 || f.callsTo("get", 1) != 4 {
		t.Fatalf("read %d bytes in %d opens, want 30 in 4", len(got), f.callsTo("get", 1))
	}
}

func TestListResumesAfterLastDelivered(t *testing.T) {
	mem := newMem(false)
	var want []segment.ID
	for i := 1; i <= 10; i++ {
		backendtest.MustPut(t, mem, segment.ID(i*7), []byte("x"))
		want = append(want, segment.ID(i*7))
	}
	f := newFaulty(mem)
	f.before = failFirst(3) // the first three listings break after two entries each
	b := New(f, fast)
	var got []segment.ID
	if err := b.List(ctx, func(i segment.Info) error { got = append(got, i.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}

	// An error from fn is returned, never retried.
	stop := fmt.Errorf("fn: %w", backend.ErrUnavailable)
	calls := 0
	f2 := newFaulty(mem)
	err := New(f2, fast).List(ctx, func(segment.Info) error { calls++; return stop })
	if err != stop || calls != 1 || f2.callsTo("list", 0) != 1 {
		t.Fatalf("fn error: %v after %d calls and %d listings", err, calls, f2.callsTo("list", 0))
	}
}

// TestDeleteLostReply: the first Delete removes the segment but reports a
// transient failure; the retry finds it gone and says why that may be.
func TestDeleteLostReply(t *testing.T) {
	mem := newMem(false)
	backendtest.MustPut(t, mem, 1, []byte("x"))
	b := New(&lostReplyDelete{Backend: mem}, fast)
	err := b.Delete(ctx, 1, "")
	if !errors.Is(err, backend.ErrNotFound) || !strings.Contains(err.Error(), "may have deleted it") {
		t.Fatalf("delete with a lost reply: %v", err)
	}
	if _, err := mem.Stat(ctx, 1); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("segment still there: %v", err)
	}
	if err := b.Delete(ctx, 1, ""); !errors.Is(err, backend.ErrNotFound) || strings.Contains(err.Error(), "earlier attempt") {
		t.Fatalf("delete of a missing segment: %v", err)
	}
}

type lostReplyDelete struct {
	backend.Backend
	n int
}

func (l *lostReplyDelete) Delete(ctx context.Context, id segment.ID, v string) error {
	err := l.Backend.Delete(ctx, id, v)
	l.n++
	if err == nil && l.n == 1 {
		return errInjected
	}
	return err
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	mem := newMem(false)
	data := backendtest.RandomBytes(3, 300000)
	backendtest.MustPut(t, mem, 1, data)
	f := flaky(mem)
	b := New(f, fast)
	for i := 0; i < 50; i++ {
		if !bytes.Equal(readAll(t, b, 1, backend.Whole), data) {
			t.Fatal("read differs")
		}
		r, err := b.Get(ctx, 1, backend.Whole) // abandoned half-read
		if err != nil {
			t.Fatal(err)
		}
		io.CopyN(io.Discard, r, 1000)
		r.Close()
		b.Stat(ctx, 1)
		b.List(ctx, func(segment.Info) error { return nil })
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		b.Stat(cctx, 1)
	}
	var after int
	for i := 0; i < 50; i++ {
		if after = runtime.NumGoroutine(); after <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%d goroutines before, %d after", before, after)
}

func TestGetMissingEmptyRange(t *testing.T) {
	for _, p := range []Policy{fast, {}} {
		b := New(newMem(false), p)
		if _, err := b.Get(ctx, 9, backend.GetOptions{Length: 0}); !errors.Is(err, backend.ErrNotFound) {
			t.Fatalf("empty range of a missing segment: %v", err)
		}
	}
}

func TestUnwrap(t *testing.T) {
	mem := newMem(false)
	b := New(mem, fast)
	u, ok := b.(interface{ Unwrap() backend.Backend })
	if !ok || u.Unwrap() != mem {
		t.Fatal("Unwrap does not return the wrapped backend")
	}
}
