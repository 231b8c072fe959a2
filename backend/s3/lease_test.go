package s3

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	"github.com/scribefs/scribefs/internal/miniotest"
)

// fakeClock is a monotonic clock that moves only when waited on: After(d)
// advances it by d at once, then calls onWait with the number of waits so
// far, so a test decides what happens during a watch without sleeping.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	waits  int
	onWait func(n int)
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.waits++
	n, now := c.waits, c.now
	c.mu.Unlock()
	if c.onWait != nil {
		c.onWait(n)
	}
	ch := make(chan time.Time, 1)
	ch <- now
	return ch
}

func (c *fakeClock) elapsed(since time.Time) time.Duration { return c.Now().Sub(since) }

// TestLease checks the writer lease against MinIO, including that MinIO
// honours the conditional puts it rests on.
func TestLease(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	a := mustNew(t, testConfig(srv.Endpoint, bucket))
	b := mustNew(t, testConfig(srv.Endpoint, bucket))

	holderA := LeaseOptions{Holder: "host-a:/var/lib/a.db", ID: "id-a", PID: 1}
	holderB := LeaseOptions{Holder: "host-b:/var/lib/b.db", ID: "id-b", PID: 2}
	la, err := a.AcquireLease(ctx, holderA)
	if err != nil {
		t.Fatal(err)
	}
	// a second writer is refused, with the holder named
	_, err = b.AcquireLease(ctx, holderB)
	if !errors.Is(err, ErrLeaseHeld) || !strings.Contains(err.Error(), "host-a:/var/lib/a.db") {
		t.Fatalf("second writer: %v", err)
	}
	// the server must refuse a create over an existing lease (If-None-Match)
	if err := (&Lease{b: b, o: LeaseOptions{Now: time.Now, Wall: time.Now}, ttl: time.Minute}).write(ctx, "", true); err == nil {
		t.Fatal("MinIO accepted If-None-Match: * over an existing object: conditional puts are not honoured")
	}
	// and a renewal with a wrong ETag (If-Match)
	if err := (&Lease{b: b, o: LeaseOptions{Now: time.Now, Wall: time.Now}, ttl: time.Minute}).write(ctx, `"not-the-etag"`, false); err == nil {
		t.Fatal("MinIO accepted If-Match with a wrong ETag: conditional puts are not honoured")
	}
	before := time.Now()
	if err := la.Renew(ctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if v := la.ValidUntil(); v.Before(before.Add(la.TTL())) || v.After(time.Now().Add(la.TTL())) {
		t.Fatalf("ValidUntil %v not TTL after the renewal was sent (%v)", v, before)
	}
	// the same holder restarting after a crash gets it back at once
	holderA.PID = 3
	la2, err := a.AcquireLease(ctx, holderA)
	if err != nil {
		t.Fatalf("same holder after crash: %v", err)
	}
	// take-over: the old lease object is gone from under la2
	holderB.TakeOver = true
	lb, err := b.AcquireLease(ctx, holderB)
	if err != nil {
		t.Fatalf("take over: %v", err)
	}
	if err := la2.Renew(ctx); !errors.Is(err, ErrLeaseHeld) || !strings.Contains(err.Error(), "host-b") {
		t.Fatalf("renew after take-over: %v", err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLeaseExpiredTakenAfterWatch: a dead holder's lease is taken only
// after the contender has seen it unchanged for a full TTL on its own
// monotonic clock; before that, without Wait, it is ErrLeaseUnconfirmed.
func TestLeaseExpiredTakenAfterWatch(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	a := mustNew(t, testConfig(srv.Endpoint, bucket))
	b := mustNew(t, testConfig(srv.Endpoint, bucket))
	past := func() time.Time { return time.Now().Add(-time.Hour) }
	// A dead holder: its lease expired an hour ago by every clock.
	if _, err := a.AcquireLease(ctx, LeaseOptions{Holder: "dead:/a.db", ID: "dead", TTL: time.Minute, Wall: past}); err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	o := LeaseOptions{Holder: "b:/b.db", ID: "b", TTL: time.Minute, Now: clk.Now, After: clk.After}
	if _, err := b.AcquireLease(ctx, o); !errors.Is(err, ErrLeaseUnconfirmed) || !strings.Contains(err.Error(), "dead:/a.db") {
		t.Fatalf("without Wait: %v, want ErrLeaseUnconfirmed naming the holder", err)
	}
	o.Wait = true
	var watched string
	o.Watching = func(h string, _ time.Duration) { watched = h }
	start := clk.Now()
	lb, err := b.AcquireLease(ctx, o)
	if err != nil {
		t.Fatalf("expired lease after a watch: %v", err)
	}
	if got := clk.elapsed(start); got < time.Minute {
		t.Fatalf("took the lease after watching %v, want at least the TTL (1m)", got)
	}
	if watched != "dead:/a.db" || clk.waits != 8 {
		t.Fatalf("watched %q with %d polls; want dead:/a.db, 8", watched, clk.waits)
	}
	if err := lb.Renew(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLeaseSkewedClockDoesNotTakeLiveLease: a contender whose wall clock
// runs minutes ahead sees a live lease as expired. It must not take it: it
// watches it, sees it renewed, and is refused with the holder's name.
func TestLeaseSkewedClockDoesNotTakeLiveLease(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	a := mustNew(t, testConfig(srv.Endpoint, bucket))
	b := mustNew(t, testConfig(srv.Endpoint, bucket))
	la, err := a.AcquireLease(ctx, LeaseOptions{Holder: "holder:/a.db", ID: "a", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	const skew = 5 * time.Minute
	clk := newFakeClock()
	// The holder renews every TTL/4 of the contender's clock (polls are TTL/8).
	clk.onWait = func(n int) {
		if n%2 == 0 {
			if err := la.Renew(ctx); err != nil {
				t.Errorf("renew: %v", err)
			}
		}
	}
	_, err = b.AcquireLease(ctx, LeaseOptions{
		Holder: "contender:/b.db", ID: "b", TTL: time.Minute, Wait: true,
		Now: clk.Now, After: clk.After, Wall: func() time.Time { return time.Now().Add(skew) },
	})
	if !errors.Is(err, ErrLeaseHeld) || !strings.Contains(err.Error(), "holder:/a.db") {
		t.Fatalf("contender with its clock %v ahead: %v, want ErrLeaseHeld naming the holder", skew, err)
	}
	t.Logf("contender %v ahead: refused after %d polls (%v of its clock): %v", skew, clk.waits, clk.elapsed(time.Unix(1_000_000, 0)), err)
	if err := la.Renew(ctx); err != nil {
		t.Fatalf("the holder lost its lease to a skewed contender: %v", err)
	}
}

// TestLeaseSameNameOtherID: two hosts with the same name and hot-tier path
// (cloned VMs, containers) but different ids are different holders.
func TestLeaseSameNameOtherID(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	a := mustNew(t, testConfig(srv.Endpoint, bucket))
	b := mustNew(t, testConfig(srv.Endpoint, bucket))
	if _, err := a.AcquireLease(ctx, LeaseOptions{Holder: "clone:/var/lib/hot.db", ID: "one"}); err != nil {
		t.Fatal(err)
	}
	_, err := b.AcquireLease(ctx, LeaseOptions{Holder: "clone:/var/lib/hot.db", ID: "two"})
	if !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("a clone with the same name and path but another id got the lease: %v", err)
	}
	if _, err := b.AcquireLease(ctx, LeaseOptions{Holder: "clone:/var/lib/hot.db", ID: "one"}); err != nil {
		t.Fatalf("the same id (a restart) was refused: %v", err)
	}
}

// stripIfNoneMatch makes b's client drop If-None-Match before signing, as a
// store that ignores the condition would behave.
func stripIfNoneMatch(b *Backend) {
	b.client = s3api.New(b.client.Options(), func(o *s3api.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("stripIfNoneMatch",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if p, ok := in.Parameters.(*s3api.PutObjectInput); ok {
						p.IfNoneMatch = nil
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
		})
	})
}

// TestProbeConditionalPuts: MinIO honours If-None-Match; a store that
// ignores it is detected.
func TestProbeConditionalPuts(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	b := mustNew(t, testConfig(srv.Endpoint, bucket))
	if err := b.ProbeConditionalPuts(ctx); err != nil {
		t.Fatalf("MinIO: %v", err)
	}
	stripIfNoneMatch(b)
	err := b.ProbeConditionalPuts(ctx)
	if !errors.Is(err, ErrConditionalPutsIgnored) {
		t.Fatalf("a store ignoring If-None-Match: %v, want ErrConditionalPutsIgnored", err)
	}
	t.Logf("refusal: %v", err)
	// the probe objects are gone
	out, lerr := srv.Client().ListObjectsV2(ctx, &s3api.ListObjectsV2Input{Bucket: &bucket})
	if lerr != nil || len(out.Contents) != 0 {
		t.Fatalf("probe objects left: %v %v", lerr, out)
	}
}

// TestLeaseReleasedTakenAtOnce: a released lease (a conditional write of a
// body marked released, not a delete) is free: another holder takes it at
// once, without Wait and without watching it, and it is no crash restart
// for its own holder either. The releaser cannot renew it any more.
func TestLeaseReleasedTakenAtOnce(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	a := mustNew(t, testConfig(srv.Endpoint, bucket))
	b := mustNew(t, testConfig(srv.Endpoint, bucket))
	la, err := a.AcquireLease(ctx, LeaseOptions{Holder: "a:/a.db", ID: "a", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := la.Renew(ctx); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("renew after release: %v, want ErrLeaseHeld", err)
	}
	la2, err := a.AcquireLease(ctx, LeaseOptions{Holder: "a:/a.db", ID: "a", TTL: time.Minute})
	if err != nil || la2.Resumed() || la2.TookOver() != "" {
		t.Fatalf("own released lease: %v (resumed %v)", err, err == nil && la2.Resumed())
	}
	if err := la2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	watched := false
	lb, err := b.AcquireLease(ctx, LeaseOptions{Holder: "b:/b.db", ID: "b", TTL: time.Minute,
		Watching: func(string, time.Duration) { watched = true }})
	if err != nil || watched {
		t.Fatalf("released lease: %v (watched %v), want taken at once", err, watched)
	}
	if err := lb.Renew(ctx); err != nil {
		t.Fatal(err)
	}
}
