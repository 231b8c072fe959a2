package mount

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/internal/faultproxy"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/tier"
)

var ctx = context.Background()

// fenceLog is a Fence that records what the keeper told it and when (by
// the keeper's clock).
type fenceLog struct {
	now func() time.Time

	mu     sync.Mutex
	events []fenceEvent
}

type fenceEvent struct {
	at    time.Time
	until time.Time // AllowColdUntil; zero for Fence
	why   error     // Fence
}

func (f *fenceLog) Fence(reason error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, fenceEvent{at: f.now(), why: reason})
}

func (f *fenceLog) AllowColdUntil(until time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, fenceEvent{at: f.now(), until: until})
}

func (f *fenceLog) Unfence() { f.AllowColdUntil(time.Time{}) }

func (f *fenceLog) list() []fenceEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fenceEvent(nil), f.events...)
}

// allowed reports whether, by the events so far, cold changes are allowed
// at t.
func (f *fenceLog) allowed(t time.Time) bool {
	ok := false
	for _, e := range f.list() {
		if e.at.After(t) {
			break
		}
		ok = e.why == nil && (e.until.IsZero() || t.Before(e.until))
	}
	return ok
}

// fakeClock moves only when waited on: After(d) moves it to d after the
// call (unless it is later already) and calls onWait, so the keeper runs
// through minutes of its clock in milliseconds, deterministically. hold,
// when set, may return a channel that a wait of d blocks on first.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	waits  int
	onWait func(now time.Time)
	hold   func(d time.Duration) <-chan struct{}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	due := c.Now().Add(d)
	if c.hold != nil {
		if ch := c.hold(d); ch != nil {
			<-ch
		}
	}
	c.mu.Lock()
	if due.After(c.now) {
		c.now = due
	}
	c.waits++
	now := c.now
	c.mu.Unlock()
	if c.onWait != nil {
		c.onWait(now)
	}
	ch := make(chan time.Time, 1)
	ch <- now
	return ch
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// mustS3 is an S3 backend on bucket reached at endpoint (MinIO or a proxy).
func mustS3(t *testing.T, endpoint, bucket string) *s3.Backend {
	t.Helper()
	b, err := s3.New(ctx, s3.Config{
		Bucket: bucket, Region: miniotest.Region, Endpoint: endpoint,
		AccessKeyID: miniotest.AccessKey, SecretAccessKey: miniotest.SecretKey,
		PathStyle: true, Timeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func mustProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestLeaseKeeperStopsBeforeExpiry: renewals fail (S3 answers 503 to
// them) for minutes. The keeper goes on retrying, fences the store at the
// lease's deadline (TTL after the last successful renewal was sent, less
// the margin) by its own clock, keeps it fenced, and lets it resume only
// after a renewal succeeds.
func TestLeaseKeeperStopsBeforeExpiry(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	p := mustProxy(t, srv.Endpoint)
	b := mustS3(t, p.URL, bucket)
	const ttl, margin = 2 * time.Minute, 30 * time.Second
	t0 := time.Unix(1_000_000, 0)
	clk := &fakeClock{now: t0}
	fl := &fenceLog{now: clk.Now}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	failFrom, healAt, stopAt := t0.Add(time.Second), t0.Add(5*time.Minute), t0.Add(7*time.Minute)
	stopped := make(chan struct{})
	var once sync.Once
	clk.onWait = func(now time.Time) {
		switch {
		case !now.Before(stopAt):
			once.Do(func() { cancel(); close(stopped) })
		case !now.Before(healAt):
			p.Clear()
		case !now.Before(failFrom):
			p.Set(faultproxy.Fault{Kind: faultproxy.Error, Method: "PUT", PathContains: "scribefs-writer.lease"})
		}
	}
	k, err := KeepLease(runCtx, LeaseOptions{
		S3: b, Fence: fl, HotPath: filepath.Join(t.TempDir(), "hot.db"), Log: testLog(t),
		TTL: ttl, Margin: margin, Now: clk.Now, After: clk.After,
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the keeper did not run through 7 minutes of its clock")
	}
	deadline := t0.Add(ttl - margin) // the lease was taken at t0 and never renewed until healAt
	for _, e := range fl.list() {
		t.Logf("%+6v  until %+6v  %v", e.at.Sub(t0), e.until.Sub(t0), e.why)
	}
	if !fl.allowed(t0) {
		t.Fatal("not allowed to write once the lease was taken")
	}
	for at := deadline; at.Before(healAt); at = at.Add(time.Second) {
		if fl.allowed(at) {
			t.Fatalf("cold changes allowed at %v, after the lease's deadline %v with every renewal failing", at.Sub(t0), deadline.Sub(t0))
		}
	}
	var fencedAt time.Time
	for _, e := range fl.list() {
		if e.why != nil && e.at.After(t0) {
			fencedAt = e.at
			break
		}
	}
	if fencedAt.IsZero() || fencedAt.After(deadline) {
		t.Fatalf("fenced at %v, want by the deadline %v", fencedAt.Sub(t0), deadline.Sub(t0))
	}
	if !fl.allowed(healAt.Add(time.Second)) {
		t.Fatal("not resumed after a successful renewal")
	}
	if n := p.Count("PUT", "scribefs-writer.lease"); n < 10 {
		t.Fatalf("%d lease writes: the keeper did not keep retrying", n)
	}
	t.Logf("fenced at +%v (deadline +%v), resumed at the first renewal after +%v; %d lease PUTs, %d clock waits",
		fencedAt.Sub(t0), deadline.Sub(t0), healAt.Sub(t0), p.Count("PUT", "scribefs-writer.lease"), clk.waits)
	_ = k
}

// TestLeaseKeeperRefusesIgnoredConditionalPuts: a store that accepts a
// conditional create of an existing object (the fault proxy answers the
// probe's puts itself, as such a store would) is refused with a clear
// error unless assume_sole_writer is set.
func TestLeaseKeeperRefusesIgnoredConditionalPuts(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	p := mustProxy(t, srv.Endpoint)
	b := mustS3(t, p.URL, bucket)
	p.Set(faultproxy.Fault{Kind: faultproxy.Accept, Method: "PUT", PathContains: "scribefs-probe-"})
	fl := &fenceLog{now: time.Now}
	hot := filepath.Join(t.TempDir(), "hot.db")
	_, err := KeepLease(ctx, LeaseOptions{S3: b, Fence: fl, HotPath: hot, Log: testLog(t)})
	if err == nil || !strings.Contains(err.Error(), "ignores conditional puts") || !strings.Contains(err.Error(), "assume_sole_writer") {
		t.Fatalf("writable mount on a store ignoring If-None-Match: %v; want a refusal naming assume_sole_writer", err)
	}
	t.Logf("refusal: %v", err)
	if fl.allowed(time.Now()) {
		t.Fatal("the store may write to the cold tier after the refusal")
	}
	if n := p.Count("PUT", "scribefs-writer.lease"); n != 0 {
		t.Fatalf("%d lease writes after a failed probe", n)
	}
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := KeepLease(kctx, LeaseOptions{S3: b, Fence: fl, HotPath: hot, AssumeSoleWriter: true, Log: testLog(t)}); err != nil {
		t.Fatalf("with assume_sole_writer: %v", err)
	}
	if !fl.allowed(time.Now()) {
		t.Fatal("with assume_sole_writer the store may not write")
	}
}

// TestHolderID: the id beside the hot-tier file is created once (0600)
// and kept; another store (a clone's own file) gets another.
func TestHolderID(t *testing.T) {
	dir := t.TempDir()
	hot := filepath.Join(dir, "hot.db")
	name, id, err := HolderID(hot)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(hot + ".id")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("id file: %v %v", st, err)
	}
	host, _ := os.Hostname()
	if name != host+":"+hot || len(id) != 32 {
		t.Fatalf("name %q id %q", name, id)
	}
	if _, again, _ := HolderID(hot); again != id {
		t.Fatalf("id changed: %s then %s", id, again)
	}
	if _, other, _ := HolderID(filepath.Join(t.TempDir(), "hot.db")); other == id {
		t.Fatal("two stores got the same id")
	}
	os.WriteFile(hot+".id", []byte("junk\n"), 0o600)
	if _, _, err := HolderID(hot); err == nil || !strings.Contains(err.Error(), hot+".id") {
		t.Fatalf("corrupt id file: %v", err)
	}
}

// startUpload begins a multipart upload of a segment key, as a holder's
// archiver does.
func startUpload(t *testing.T, srv *miniotest.Server, bucket, key string) string {
	t.Helper()
	out, err := srv.Client().CreateMultipartUpload(ctx, &s3api.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.UploadId)
}

func uploads(t *testing.T, srv *miniotest.Server, bucket string) map[string]bool {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(ctx, &s3api.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, u := range out.Uploads {
		m[aws.ToString(u.UploadId)] = true
	}
	return m
}

// TestAbortStaleUploadsSparesRecent: only while the lease is held,
// uploads begun more than TTL plus a margin before it was taken (by the
// store's clock) are aborted at once; one begun shortly before (a previous
// holder may still be finishing it) only once that time has passed; one
// begun after the lease was taken (this holder's own) never. A holder
// taking back its own lease after a crash aborts every older one at once.
func TestAbortStaleUploadsSparesRecent(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	b := mustS3(t, srv.Endpoint, bucket)
	old := startUpload(t, srv, bucket, "segments/segment-0000000000000001.bin")
	time.Sleep(4 * time.Second) // the store's clock must move past old + TTL + margin
	recent := startUpload(t, srv, bucket, "segments/segment-0000000000000002.bin")
	time.Sleep(1100 * time.Millisecond) // Last-Modified has whole seconds
	opts := s3.LeaseOptions{Holder: "me", ID: "me", TTL: 2 * time.Second}
	l, err := b.AcquireLease(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	ours := startUpload(t, srv, bucket, "segments/segment-0000000000000003.bin")
	abortStaleUploads(ctx, b, l, func() bool { return false }, nil, testLog(t))
	if left := uploads(t, srv, bucket); !left[old] || !left[recent] || !left[ours] {
		t.Fatalf("aborted uploads without holding the lease: %v", left)
	}
	second := make(chan time.Time)
	done := make(chan struct{})
	go func() {
		defer close(done)
		abortStaleUploads(ctx, b, l, func() bool { return true }, func(time.Duration) <-chan time.Time { return second }, testLog(t))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for uploads(t, srv, bucket)[old] && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if left := uploads(t, srv, bucket); left[old] || !left[recent] || !left[ours] {
		t.Fatalf("first pass: old %v recent %v ours %v left; want false, true, true", left[old], left[recent], left[ours])
	}
	second <- time.Now() // TTL + margin later
	<-done
	if left := uploads(t, srv, bucket); left[recent] || !left[ours] {
		t.Fatalf("second pass: recent %v ours %v left; want false, true", left[recent], left[ours])
	}
	// a restart: the holder takes its own lease back and aborts at once
	// every upload begun before (its previous process's)
	time.Sleep(1100 * time.Millisecond)
	l2, err := b.AcquireLease(ctx, opts)
	if err != nil || !l2.Resumed() {
		t.Fatalf("taking back its own lease: %v, resumed %v", err, l2 != nil && l2.Resumed())
	}
	abortStaleUploads(ctx, b, l2, func() bool { return true }, nil, testLog(t))
	if left := uploads(t, srv, bucket); left[ours] {
		t.Fatal("after a restart the previous process's upload was not aborted at once")
	}
}

// mustStore is a writable tiered store over a fresh bbolt file and cold.
func mustStore(t *testing.T, cold backend.Backend, cfg tier.Config) (*tier.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hot.db")
	hot, err := local.Open(path, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hot.Close() })
	s, err := tier.New(hot, hot.Index(), cold, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

// TestStartRefusedAbortsNoUploads: a mount refused because another host
// holds the lease must not touch that host's uploads in flight.
func TestStartRefusedAbortsNoUploads(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	live := mustS3(t, srv.Endpoint, bucket)
	if _, err := live.AcquireLease(ctx, s3.LeaseOptions{Holder: "live:/hot.db", ID: "live"}); err != nil {
		t.Fatal(err)
	}
	inFlight := startUpload(t, srv, bucket, "segments/segment-0000000000000007.bin")
	// The lease answers slowly: whatever the mount starts before it knows
	// it is refused has time to act.
	p := mustProxy(t, srv.Endpoint)
	p.Set(faultproxy.Fault{Kind: faultproxy.Latency, Method: "GET", PathContains: "scribefs-writer.lease", Delay: 800 * time.Millisecond})
	b := mustS3(t, p.URL, bucket)
	store, hot := mustStore(t, b, tier.Config{})
	_, err := Start(ctx, Options{Mountpoint: t.TempDir(), Store: store, S3: b, HotPath: hot, Log: testLog(t)})
	if !errors.Is(err, s3.ErrLeaseHeld) {
		t.Fatalf("mount while another host holds the lease: %v, want ErrLeaseHeld", err)
	}
	for range 5 {
		if !uploads(t, srv, bucket)[inFlight] {
			t.Fatal("a refused mount aborted the live holder's upload in flight")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLeaseKeeperTakeOverWaitsTTL: --take-over takes a live lease at once,
// but lets the store change the cold tier only a TTL later (by the taker's
// clock), when the previous holder has surely stopped: renewals meanwhile
// do not let it start early.
func TestLeaseKeeperTakeOverWaitsTTL(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	live := mustS3(t, srv.Endpoint, bucket)
	if _, err := live.AcquireLease(ctx, s3.LeaseOptions{Holder: "live:/hot.db", ID: "live"}); err != nil {
		t.Fatal(err)
	}
	p := mustProxy(t, srv.Endpoint)
	const ttl = 2 * time.Minute
	t0 := time.Unix(1_000_000, 0)
	release := make(chan struct{})
	var renewWaits atomic.Int32
	clk := &fakeClock{now: t0, hold: func(d time.Duration) <-chan struct{} {
		if d == ttl {
			return release // the take-over's wait: until three renewals are done
		}
		if renewWaits.Add(1) == 4 {
			close(release)
		}
		return nil
	}}
	fl := &fenceLog{now: clk.Now}
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	held := make(chan struct{})
	var once sync.Once
	_, err := KeepLease(kctx, LeaseOptions{
		S3: mustS3(t, p.URL, bucket), Fence: fl, HotPath: filepath.Join(t.TempDir(), "hot.db"), TakeOver: true,
		TTL: ttl, Now: clk.Now, After: clk.After, Log: testLog(t),
		OnHeld: func(context.Context, *s3.Lease, func() bool) { once.Do(func() { close(held) }) },
	})
	if err != nil {
		t.Fatalf("take over: %v", err)
	}
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the store was never allowed to write after the take-over")
	}
	cancel()
	var first time.Time
	for _, e := range fl.list() {
		t.Logf("%+6v  until %+6v  %v", e.at.Sub(t0), e.until.Sub(t0), e.why)
		if e.why == nil && first.IsZero() {
			first = e.at
		}
	}
	if n := p.Count("PUT", "scribefs-writer.lease"); n < 4 {
		t.Fatalf("%d lease writes: want the take-over and three renewals before the store may write", n)
	}
	if first.Before(t0.Add(ttl)) {
		t.Fatalf("after a take-over the store could write at +%v, before a TTL (%v) had passed", first.Sub(t0), ttl)
	}
	t.Logf("take-over at +0s; renewals at +30s, +1m, +1m30s left the store fenced; allowed at +%v", first.Sub(t0))
}
