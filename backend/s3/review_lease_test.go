package s3

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	"github.com/scribefs/scribefs/internal/miniotest"
)

// Adversarial review of the writer lease (backend/s3/lease.go), against
// MinIO.

// TestReviewRenewReplyLostKeepsLease: a renewal that MinIO applies but
// whose reply never reaches the holder (a connection lost after the
// request was sent, a timeout that cancels it late) must not cost the
// holder its lease. The lease object then holds this holder's own write
// (its ID), just with an ETag the holder has not seen; the next renewal
// must find its own lease, not declare it "taken over" by itself.
func TestReviewRenewReplyLostKeepsLease(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	var drop atomic.Bool
	var dropped atomic.Int32
	proxy := newHTTPProxy(t, srv.Endpoint, nil, func(r *http.Response) error {
		req := r.Request
		if req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, leaseName) &&
			req.Header.Get("If-Match") != "" && r.StatusCode == http.StatusOK && drop.CompareAndSwap(true, false) {
			dropped.Add(1)
			return errors.New("reply lost") // MinIO has applied the PUT; the client gets a 502
		}
		return nil
	})
	a := mustNew(t, testConfig(proxy.URL, bucket))
	la, err := a.AcquireLease(ctx, LeaseOptions{Holder: "host-a:/a.db", ID: "id-a", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	drop.Store(true)
	err1 := la.Renew(ctx)
	if dropped.Load() != 1 {
		t.Fatalf("the renewal's reply was not dropped (renew: %v)", err1)
	}
	t.Logf("renewal applied by MinIO, reply lost: %v", err1)
	if errors.Is(err1, ErrLeaseHeld) {
		t.Fatalf("a renewal whose reply was lost reports the lease lost: %v", err1)
	}
	// The next renewal goes through faithfully: the lease is still ours.
	if err := la.Renew(ctx); err != nil {
		t.Fatalf("renewal after a lost reply: %v (the lease object holds our own write, id-a)", err)
	}
	// And a contender is still refused.
	b := mustNew(t, testConfig(srv.Endpoint, bucket))
	if _, err := b.AcquireLease(ctx, LeaseOptions{Holder: "host-b:/b.db", ID: "id-b", TTL: time.Minute}); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("contender: %v, want ErrLeaseHeld", err)
	}
}

// TestReviewTwoContendersWatchingOneExpiredLease: two contenders watch the
// same dead holder's lease; the one whose watch ends first takes it, and
// the other, whose conditional write then fails, must be refused naming
// the winner, not take it too.
func TestReviewTwoContendersWatchingOneExpiredLease(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	dead := mustNew(t, testConfig(srv.Endpoint, bucket))
	b := mustNew(t, testConfig(srv.Endpoint, bucket))
	c := mustNew(t, testConfig(srv.Endpoint, bucket))
	past := func() time.Time { return time.Now().Add(-time.Hour) }
	if _, err := dead.AcquireLease(ctx, LeaseOptions{Holder: "dead:/a.db", ID: "dead", TTL: time.Minute, Wall: past}); err != nil {
		t.Fatal(err)
	}
	clkB, clkC := newFakeClock(), newFakeClock()
	var lc *Lease
	var errC error
	// C starts watching when B has polled once, and its whole watch runs
	// during B's last poll: C takes the lease just before B tries.
	clkB.onWait = func(n int) {
		if n == 8 {
			lc, errC = c.AcquireLease(ctx, LeaseOptions{Holder: "c:/c.db", ID: "c", TTL: time.Minute, Wait: true, Now: clkC.Now, After: clkC.After})
		}
	}
	_, errB := b.AcquireLease(ctx, LeaseOptions{Holder: "b:/b.db", ID: "b", TTL: time.Minute, Wait: true, Now: clkB.Now, After: clkB.After})
	if errC != nil {
		t.Fatalf("C: %v", errC)
	}
	if !errors.Is(errB, ErrLeaseHeld) || !strings.Contains(errB.Error(), "c:/c.db") {
		t.Fatalf("B after C took the watched lease: %v, want ErrLeaseHeld naming c:/c.db", errB)
	}
	if err := lc.Renew(ctx); err != nil {
		t.Fatalf("C lost the lease: %v", err)
	}
	t.Logf("B refused: %v", errB)
}

// TestReviewWallClockJumpDoesNotShortenWatch: the contender's wall clock
// jumping days forward mid-watch changes nothing: the watch still lasts a
// full TTL of its monotonic clock.
func TestReviewWallClockJumpDoesNotShortenWatch(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	dead := mustNew(t, testConfig(srv.Endpoint, bucket))
	b := mustNew(t, testConfig(srv.Endpoint, bucket))
	past := func() time.Time { return time.Now().Add(-time.Hour) }
	if _, err := dead.AcquireLease(ctx, LeaseOptions{Holder: "dead:/a.db", ID: "dead", TTL: time.Minute, Wall: past}); err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock()
	var jump atomic.Int64
	clk.onWait = func(n int) {
		if n == 1 {
			jump.Store(int64(72 * time.Hour))
		}
	}
	start := clk.Now()
	_, err := b.AcquireLease(ctx, LeaseOptions{
		Holder: "b:/b.db", ID: "b", TTL: time.Minute, Wait: true, Now: clk.Now, After: clk.After,
		Wall: func() time.Time { return time.Now().Add(time.Duration(jump.Load())) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := clk.elapsed(start); got < time.Minute {
		t.Fatalf("watched %v after a wall-clock jump, want at least the TTL", got)
	}
}

// stripIfMatch makes b's client drop If-Match from PUTs before signing, as
// a store that honours If-None-Match but ignores If-Match on PUT would
// behave (S3-compatible stores added the two at different times).
func stripIfMatch(b *Backend) {
	b.client = s3api.New(b.client.Options(), func(o *s3api.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("stripIfMatch",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if p, ok := in.Parameters.(*s3api.PutObjectInput); ok {
						p.IfMatch = nil
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
		})
	})
}

// TestReviewProbeCatchesIgnoredIfMatch: renewals and take-overs rest on
// If-Match as much as creation rests on If-None-Match. On a store that
// ignores If-Match, a holder whose lease was taken over renews without
// noticing, and both write. The probe, which a writable mount relies on
// to refuse such a store, must catch it; failing that, at least the
// holder's renewal after a take-over must fail.
func TestReviewProbeCatchesIgnoredIfMatch(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	a := mustNew(t, testConfig(srv.Endpoint, bucket))
	b := mustNew(t, testConfig(srv.Endpoint, bucket))
	stripIfMatch(a)
	stripIfMatch(b)
	probe := a.ProbeConditionalPuts(ctx)
	t.Logf("probe on a store ignoring If-Match: %v", probe)
	la, err := a.AcquireLease(ctx, LeaseOptions{Holder: "a:/a.db", ID: "a", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AcquireLease(ctx, LeaseOptions{Holder: "b:/b.db", ID: "b", TTL: time.Minute, TakeOver: true}); err != nil {
		t.Fatal(err)
	}
	renew := la.Renew(ctx)
	t.Logf("A renews after B took over: %v", renew)
	if probe == nil && renew == nil {
		t.Fatal("a store ignoring If-Match passes the probe, and a holder whose lease was taken over renews it without error: two writers")
	}
}

// beforeLeaseWrite makes b's client call hook before each DeleteObject,
// and each PutObject of the lease, is sent: a release's write, whether it
// deletes the lease or overwrites it.
func beforeLeaseWrite(b *Backend, hook func()) {
	b.client = s3api.New(b.client.Options(), func(o *s3api.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("beforeLeaseWrite",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					switch p := in.Parameters.(type) {
					case *s3api.DeleteObjectInput:
						hook()
					case *s3api.PutObjectInput:
						if strings.HasSuffix(*p.Key, leaseName) {
							hook()
						}
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
		})
	})
}

// TestReviewReleaseRacingTakeOver: a clean unmount releases the lease; a
// take-over landing just before the release's write (it once read the
// lease and then deleted it, and MinIO ignores If-Match on DELETE) must
// not be undone: the taker keeps its lease and renews it.
func TestReviewReleaseRacingTakeOver(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	a := mustNew(t, testConfig(srv.Endpoint, bucket))
	b := mustNew(t, testConfig(srv.Endpoint, bucket))
	la, err := a.AcquireLease(ctx, LeaseOptions{Holder: "a:/a.db", ID: "a", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var lb *Lease
	var errB error
	beforeLeaseWrite(a, func() {
		if lb == nil && errB == nil {
			lb, errB = b.AcquireLease(ctx, LeaseOptions{Holder: "b:/b.db", ID: "b", TTL: time.Minute, TakeOver: true})
		}
	})
	relErr := la.Release(ctx)
	if errB != nil || lb == nil {
		t.Fatalf("take-over during the release: %v", errB)
	}
	t.Logf("A's release: %v", relErr)
	if err := lb.Renew(ctx); err != nil {
		t.Fatalf("B took the lease over while A released it; B's renewal: %v", err)
	}
}
