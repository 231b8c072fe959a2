package tier

// A model-based test of the store: seeded random operations from several
// goroutines at once against the real store (bbolt hot tier, an in-memory
// bucket with hooks that hold uploads in flight, fail or delay deletes and
// stats, and slow listings), while background goroutines archive,
// reconcile, replay tombstones, start and end S3 outages, fence the store,
// and write and delete objects in the bucket as another program would. At
// quiescent points the store is restarted now and then and checked against
// a reference model of what every acknowledged operation promised.
//
// Each client goroutine owns its segment ids, so the model of an id is
// sequential: a client can check every read against it at any moment,
// since nothing in the background may change what a segment reads. CI runs
// a fixed set of seeds; -model.seeds and -model.rounds run longer, and
// -model.seed replays one seed (a failure prints its seed).

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/backend/mem"
	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/cache"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
)

var (
	modelSeeds  = flag.Int("model.seeds", 4, "model test: how many seeds to run on each hot tier")
	modelSeed   = flag.Int64("model.seed", 0, "model test: run only this seed")
	modelRounds = flag.Int("model.rounds", 6, "model test: rounds (quiescent checks) per seed")
	modelOps    = flag.Int("model.ops", 60, "model test: operations per client per round")
)

const (
	modelClients   = 3
	idsPerClient   = 6
	foreignIDStart = 900 // ids 900..904 are written by "another program"
	foreignIDs     = 5
)

// TestModelMinIO runs the model against a real bucket on MinIO (the S3
// backend, as a mount assembles it below the tier), fewer operations.
func TestModelMinIO(t *testing.T) {
	srv := miniotest.Start(t)
	for _, seed := range []int64{1, 2} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			b, err := s3.New(ctx, s3.Config{Bucket: srv.NewBucket(t), Region: miniotest.Region, Endpoint: srv.Endpoint,
				AccessKeyID: miniotest.AccessKey, SecretAccessKey: miniotest.SecretKey, PathStyle: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			m := newModelRunOn(t, seed, "local", &hooked{Backend: b})
			defer func() {
				if t.Failed() {
					t.Logf("replay with: go test ./tier -run 'TestModelMinIO/seed=%d'", seed)
				}
			}()
			for round := 0; round < 4 && !t.Failed(); round++ {
				m.round(round)
			}
			t.Logf("seed %d on MinIO: %d operations acknowledged, %d rejected, %d background steps, %d restarts",
				seed, m.acked.Load(), m.rejected.Load(), m.background.Load(), m.restarts)
		})
	}
}

func TestModel(t *testing.T) {
	seeds := []int64{}
	if *modelSeed != 0 {
		seeds = append(seeds, *modelSeed)
	} else {
		for i := 1; i <= *modelSeeds; i++ {
			seeds = append(seeds, int64(i))
		}
	}
	// The bbolt hot tier, and the in-memory one (no fsyncs: more
	// interleavings per second, twice the seeds).
	for _, hot := range []string{"local", "mem"} {
		run := seeds
		if hot == "mem" && *modelSeed == 0 {
			run = nil
			for i := 1; i <= 2**modelSeeds; i++ {
				run = append(run, 1000+int64(i))
			}
		}
		for _, seed := range run {
			t.Run(fmt.Sprintf("hot=%s/seed=%d", hot, seed), func(t *testing.T) {
				m := newModelRun(t, seed, hot)
				defer func() {
					if t.Failed() {
						t.Logf("replay with: go test ./tier -run 'TestModel/hot=%s' -model.seed %d", hot, seed)
					}
				}()
				for round := 0; round < *modelRounds && !t.Failed(); round++ {
					m.round(round)
				}
				t.Logf("seed %d: %d operations acknowledged, %d rejected, %d background steps, %d restarts",
					seed, m.acked.Load(), m.rejected.Load(), m.background.Load(), m.restarts)
			})
		}
	}
}

// modelRun is one seed's store, bucket and model.
type modelRun struct {
	t      *testing.T
	seed   int64
	dir    string
	cold   *hooked
	kind   string // the hot tier: "local" (bbolt) or "mem"
	hot    Hot
	index  Index
	s      *Store
	cfg    Config
	faults faults

	// model: what each owned id must read (absent: deleted).
	mu    sync.Mutex
	model map[segment.ID][]byte

	acked, rejected, background atomic.Int64
	restarts                    int
}

// faults are what the background turns on and off; clients read them to
// know which failures an operation may meet.
type faults struct {
	outage   atomic.Int64 // odd while S3 is down; counts changes and glitches
	fenced   atomic.Int64 // odd while fenced
	denied   atomic.Int64 // odd while cold deletes are refused for good
	rnd      *rand.Rand
	rndMu    sync.Mutex
	slowness atomic.Int64 // max hook delay, microseconds
}

func (f *faults) intn(n int) int {
	f.rndMu.Lock()
	defer f.rndMu.Unlock()
	return f.rnd.Intn(n)
}

func (f *faults) pause() {
	if max := f.slowness.Load(); max > 0 && f.intn(3) == 0 {
		time.Sleep(time.Duration(f.intn(int(max))) * time.Microsecond)
	}
}

func newModelRun(t *testing.T, seed int64, kind string) *modelRun {
	return newModelRunOn(t, seed, kind, &hooked{Backend: mem.New(segment.TierCold)})
}

func newModelRunOn(t *testing.T, seed int64, kind string, cold *hooked) *modelRun {
	r := rand.New(rand.NewSource(seed))
	m := &modelRun{t: t, seed: seed, kind: kind, dir: t.TempDir(), model: map[segment.ID][]byte{}}
	m.faults.rnd = rand.New(rand.NewSource(seed * 7919))
	m.cfg = Config{WriteThrough: r.Intn(3) == 0, ArchiveAfter: time.Hour, FetchSpan: 2 * segment.BlockSize,
		ReadAhead: 4 * segment.BlockSize, PrefetchSegments: r.Intn(3)}
	m.cold = cold
	f := &m.faults
	m.cold.set(func(c *hooked) {
		c.afterPut = func(segment.ID) { f.pause() }
		c.beforeEntry = func(segment.ID) {
			if f.intn(50) == 0 {
				f.pause()
			}
		}
		c.beforeDelete = func(segment.ID) error {
			f.pause()
			switch {
			case f.denied.Load()%2 == 1:
				return fmt.Errorf("injected: %w", backend.ErrPermission)
			case f.intn(8) == 0:
				return fmt.Errorf("injected: %w", backend.ErrUnavailable)
			}
			return nil
		}
		c.beforeStat = func(segment.ID) error {
			if f.intn(10) == 0 {
				f.outage.Add(2) // a glitch: reads that met it may fail
				return fmt.Errorf("injected: %w", backend.ErrUnavailable)
			}
			return nil
		}
	})
	m.open()
	t.Cleanup(func() { m.hot.Close() })
	return m
}

func (m *modelRun) open() {
	switch {
	case m.kind == "mem" && m.hot == nil:
		b := mem.New(segment.TierHot)
		m.hot, m.index = b, b.Index()
	case m.kind == "mem":
		// A restart keeps the same memory, as a file keeps its bytes.
	default:
		b, err := local.Open(filepath.Join(m.dir, "hot.db"), local.Options{})
		if err != nil {
			m.t.Fatal(err)
		}
		m.hot, m.index = b, b.Index()
	}
	cfg := m.cfg
	cfg.SpoolDir = filepath.Join(m.dir, "spool")
	s, err := New(m.hot, m.index, m.cold, cache.New(8<<20), cfg)
	if err != nil {
		m.t.Fatal(err)
	}
	m.s = s
}

func (m *modelRun) restart() {
	if m.kind != "mem" {
		m.hot.Close()
	}
	m.open()
	m.restarts++
}

func ownedIDs(client int) []segment.ID {
	out := make([]segment.ID, idsPerClient)
	for i := range out {
		out[i] = segment.ID(client*100 + i + 1)
	}
	return out
}

func allOwned() []segment.ID {
	var out []segment.ID
	for c := 0; c < modelClients; c++ {
		out = append(out, ownedIDs(c)...)
	}
	return out
}

// randomData is small mostly, sometimes several blocks (so ranged reads
// and block checksums are exercised).
func randomData(r *rand.Rand) []byte {
	n := r.Intn(3000)
	switch r.Intn(12) {
	case 0:
		n = 0
	case 1:
		n = segment.BlockSize + r.Intn(2*segment.BlockSize)
	}
	b := make([]byte, n)
	r.Read(b)
	return b
}

func (m *modelRun) get(id segment.ID) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.model[id]
	return b, ok
}

func (m *modelRun) set(id segment.ID, b []byte, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ok {
		m.model[id] = b
	} else {
		delete(m.model, id)
	}
}

// round runs the clients and the background together, then checks.
func (m *modelRun) round(round int) {
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, modelClients+2)
	m.faults.slowness.Store(int64([]int{0, 200, 2000}[round%3]))
	for c := 0; c < modelClients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			r := rand.New(rand.NewSource(m.seed*1000 + int64(round)*10 + int64(c)))
			for i := 0; i < *modelOps; i++ {
				if err := m.clientOp(r, c); err != nil {
					errs <- fmt.Errorf("client %d, op %d: %w", c, i, err)
					return
				}
			}
		}(c)
	}
	var bg sync.WaitGroup
	for b := 0; b < 2; b++ {
		bg.Add(1)
		go func(b int) {
			defer bg.Done()
			r := rand.New(rand.NewSource(m.seed*1000 + int64(round)*10 + 7 + int64(b)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				m.backgroundOp(r)
				m.background.Add(1)
			}
		}(b)
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	close(errs)
	for err := range errs {
		m.t.Fatalf("seed %d round %d: %v", m.seed, round, err)
	}
	m.quiesce(round)
}

// clientOp does one random operation on one of the client's ids and
// checks or records what it promised.
func (m *modelRun) clientOp(r *rand.Rand, c int) error {
	own := ownedIDs(c)
	id := own[r.Intn(len(own))]
	outageBefore := m.faults.outage.Load()
	faultsAt := func() bool {
		// Whether a fault may have touched the operation.
		o := m.faults.outage.Load()
		return o != outageBefore || o%2 == 1
	}
	want, exists := m.get(id)
	switch op := r.Intn(10); {
	case op < 3: // put or overwrite
		data := randomData(r)
		_, err := m.s.Put(ctx, id, bytes.NewReader(data), int64(len(data)), time.Time{})
		switch {
		case err == nil, errors.Is(err, ErrNotWrittenThrough):
			m.set(id, data, true)
			m.acked.Add(1)
		default:
			return fmt.Errorf("put %d: %w", id, err)
		}
	case op == 3 && exists: // append
		tail := make([]byte, r.Intn(100))
		r.Read(tail)
		data := append(bytes.Clone(want), tail...)
		_, err := m.s.Put(ctx, id, bytes.NewReader(data), int64(len(data)), time.Time{})
		switch {
		case err == nil, errors.Is(err, ErrNotWrittenThrough):
			m.set(id, data, true)
			m.acked.Add(1)
		default:
			return fmt.Errorf("append %d: %w", id, err)
		}
	case op == 4: // delete
		err := m.s.Delete(ctx, id)
		switch {
		case err == nil:
			if !exists {
				return fmt.Errorf("delete %d succeeded, but the segment was deleted", id)
			}
			m.set(id, nil, false)
			m.acked.Add(1)
		case errors.Is(err, backend.ErrNotFound):
			if exists {
				return fmt.Errorf("delete %d: %v, but the segment exists", id, err)
			}
		case errors.Is(err, backend.ErrPermission), errors.Is(err, backend.ErrReadOnly), backend.IsTransient(err):
			m.rejected.Add(1) // unchanged: checked by the next read
		default:
			return fmt.Errorf("delete %d: %w", id, err)
		}
	case op == 5: // rename onto another owned id
		to := own[r.Intn(len(own))]
		err := m.s.Rename(ctx, id, to)
		switch {
		case err == nil:
			if !exists {
				return fmt.Errorf("rename %d to %d succeeded, but %d was deleted", id, to, id)
			}
			m.set(id, nil, false)
			m.set(to, want, true)
			m.acked.Add(1)
		case errors.Is(err, backend.ErrNotFound):
			if exists && !faultsAt() {
				return fmt.Errorf("rename %d: %v, but it exists", id, err)
			}
			if exists {
				m.rejected.Add(1)
			}
		case errors.Is(err, backend.ErrPermission), errors.Is(err, backend.ErrReadOnly), backend.IsTransient(err):
			m.rejected.Add(1)
		default:
			return fmt.Errorf("rename %d to %d: %w", id, to, err)
		}
	default: // read
		got, err := m.read(id)
		switch {
		case err == nil:
			if !exists {
				return fmt.Errorf("segment %d was deleted, but reads %d bytes", id, len(got))
			}
			if !bytes.Equal(got, want) {
				return fmt.Errorf("segment %d reads %d bytes that differ from the %d written", id, len(got), len(want))
			}
		case errors.Is(err, backend.ErrNotFound):
			if exists {
				return fmt.Errorf("segment %d: %v, but it was written", id, err)
			}
		case backend.IsTransient(err) && faultsAt():
		default:
			return fmt.Errorf("read %d: %w", id, err)
		}
	}
	return nil
}

func (m *modelRun) read(id segment.ID) ([]byte, error) {
	r, err := m.s.Open(ctx, id)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.NewSectionReader(r, 0, r.Info().Size))
}

// backgroundOp is one step of what runs beside the clients.
func (m *modelRun) backgroundOp(r *rand.Rand) {
	f := &m.faults
	owned := allOwned()
	switch op := r.Intn(20); {
	case op < 6:
		m.s.Archive(ctx, owned[r.Intn(len(owned))])
	case op < 7:
		m.s.ArchiveAll(ctx, m.hotInfos(), nil)
	case op < 10:
		m.s.Reconcile(ctx)
	case op < 12:
		m.s.ReplayTombstones(ctx)
	case op < 13:
		f.outage.Add(1)
		m.cold.down.Store(f.outage.Load()%2 == 1)
	case op < 14:
		if f.fenced.Add(1)%2 == 1 {
			m.s.Fence(errors.New("lease taken over (model)"))
		} else {
			m.s.Unfence()
		}
	case op < 15:
		f.denied.Add(1)
	case op < 17:
		id := segment.ID(foreignIDStart + r.Intn(foreignIDs))
		data := randomData(r)
		m.cold.Backend.Put(ctx, id, bytes.NewReader(data), backend.PutOptions{Size: int64(len(data))})
	case op < 18:
		m.cold.Backend.Delete(ctx, segment.ID(foreignIDStart+r.Intn(foreignIDs)), "")
	default:
		id := owned[r.Intn(len(owned))]
		if info, err := m.s.Stat(ctx, id); err == nil {
			m.s.SetModTime(ctx, id, info.ModTime) // an mtime change changes no bytes
		}
	}
	time.Sleep(time.Duration(r.Intn(300)) * time.Microsecond)
}

func (m *modelRun) hotInfos() []segment.Info {
	infos, _ := m.s.HotSegments(ctx)
	return infos
}

// quiesce ends every fault, lets the store catch up, maybe restarts it,
// and checks it against the model.
func (m *modelRun) quiesce(round int) {
	t := m.t
	f := &m.faults
	if f.outage.Load()%2 == 1 {
		f.outage.Add(1)
	}
	m.cold.down.Store(false)
	if f.fenced.Load()%2 == 1 {
		f.fenced.Add(1)
	}
	m.s.Unfence()
	if f.denied.Load()%2 == 1 {
		f.denied.Add(1)
	}
	if round%2 == 1 {
		m.restart()
	}
	// Replay with no injected failures: every pending delete is carried
	// out.
	m.cold.set(func(c *hooked) { c.beforeDelete, c.beforeStat = nil, nil })
	defer m.cold.set(func(c *hooked) {
		c.beforeDelete = func(segment.ID) error {
			f.pause()
			switch {
			case f.denied.Load()%2 == 1:
				return fmt.Errorf("injected: %w", backend.ErrPermission)
			case f.intn(8) == 0:
				return fmt.Errorf("injected: %w", backend.ErrUnavailable)
			}
			return nil
		}
		c.beforeStat = func(segment.ID) error {
			if f.intn(10) == 0 {
				f.outage.Add(2) // a glitch: reads that met it may fail
				return fmt.Errorf("injected: %w", backend.ErrUnavailable)
			}
			return nil
		}
	})
	if _, err := m.s.ReplayTombstones(ctx); err != nil {
		t.Fatalf("seed %d round %d: replay: %v", m.seed, round, err)
	}
	if err := m.s.Reconcile(ctx); err != nil {
		t.Fatalf("seed %d round %d: reconcile: %v", m.seed, round, err)
	}
	m.check(round, "after replay and reconcile")
	if round%3 == 2 {
		// Archive everything: the bucket then holds exactly the model.
		if n := m.s.ArchiveAll(ctx, m.hotInfos(), nil); n < 0 {
			t.Fatal(n)
		}
		m.check(round, "after archiving everything")
		objects := m.cold.Objects()
		for _, id := range allOwned() {
			want, ok := m.get(id)
			got, inBucket := objects[id]
			if ok != inBucket || !bytes.Equal(got, want) {
				t.Fatalf("seed %d round %d: segment %d: bucket holds %d bytes (present %v), model %d (present %v)",
					m.seed, round, id, len(got), inBucket, len(want), ok)
			}
		}
	}
}

func (m *modelRun) check(round int, when string) {
	t := m.t
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d round %d, %s: %s", m.seed, round, when, fmt.Sprintf(format, args...))
	}
	tombs, err := m.s.index.Tombstones()
	if err != nil {
		fail("%v", err)
	}
	if len(tombs) > 0 {
		fail("%d deletes still pending after a replay with S3 up: %v", len(tombs), tombs)
	}
	listed := map[segment.ID]bool{}
	if err := m.s.List(ctx, func(i segment.Info) error { listed[i.ID] = true; return nil }); err != nil {
		fail("list: %v", err)
	}
	objects := m.cold.Objects()
	for _, id := range allOwned() {
		want, ok := m.get(id)
		if listed[id] != ok {
			fail("segment %d listed %v, model says present %v", id, listed[id], ok)
		}
		got, err := m.read(id)
		switch {
		case !ok && !errors.Is(err, backend.ErrNotFound):
			fail("deleted segment %d: read gives %d bytes, %v", id, len(got), err)
		case ok && err != nil:
			fail("segment %d: %v", id, err)
		case ok && !bytes.Equal(got, want):
			fail("segment %d reads %d bytes that differ from the model's %d", id, len(got), len(want))
		}
		rec, err := m.s.index.Record(id)
		if err != nil {
			fail("%v", err)
		}
		obj, inBucket := objects[id]
		switch {
		case inBucket && !ok:
			fail("deleted segment %d still has an object in the bucket", id)
		case inBucket && (rec.Cold == nil || rec.Hot == nil && !bytes.Equal(obj, want)):
			fail("segment %d: bucket object not indexed (%+v) or not the model's bytes", id, rec.Cold)
		case !inBucket && rec.Cold != nil:
			fail("segment %d: index entry %s for no object", id, rec.Cold.Version)
		}
	}
	// Objects of the other program: listed and readable as the bucket has
	// them.
	var foreign []segment.ID
	for id := range objects {
		if id >= foreignIDStart {
			foreign = append(foreign, id)
		}
	}
	sort.Slice(foreign, func(a, b int) bool { return foreign[a] < foreign[b] })
	for id := segment.ID(foreignIDStart); id < foreignIDStart+foreignIDs; id++ {
		obj, ok := objects[id]
		if listed[id] != ok {
			fail("foreign segment %d listed %v, in the bucket %v", id, listed[id], ok)
		}
		if ok {
			got, err := m.read(id)
			if err != nil || !bytes.Equal(got, obj) {
				fail("foreign segment %d: %v, or bytes differ from the bucket's", id, err)
			}
		}
	}
}
