package mount

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/internal/miniotest"
)

// Adversarial review of the lease keeper (internal/mount/lease.go).

// replyDropper is a reverse proxy to MinIO that, when armed, forwards the
// next lease renewal (a PUT of the lease with If-Match) and lets MinIO
// apply it, but answers the client 502: the reply is lost on the way back.
type replyDropper struct {
	*httptest.Server
	armed   atomic.Bool
	dropped atomic.Int32
}

func newReplyDropper(t *testing.T, target string) *replyDropper {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	d := &replyDropper{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		ModifyResponse: func(r *http.Response) error {
			req := r.Request
			if req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, "scribefs-writer.lease") &&
				req.Header.Get("If-Match") != "" && r.StatusCode == http.StatusOK && d.armed.CompareAndSwap(true, false) {
				d.dropped.Add(1)
				return errors.New("reply lost")
			}
			return nil
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	d.Server = httptest.NewServer(rp)
	t.Cleanup(d.Close)
	return d
}

// TestReviewKeeperSurvivesLostRenewReply: one renewal's reply is lost
// after MinIO applied it (a timeout or a dropped connection on the way
// back); every renewal after it reaches MinIO and is answered. The keeper
// must fence at most until a later renewal succeeds, and then let the
// store write again: nobody else holds the lease.
func TestReviewKeeperSurvivesLostRenewReply(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	d := newReplyDropper(t, srv.Endpoint)
	b := mustS3(t, d.URL, bucket)
	const ttl, margin = 2 * time.Minute, 30 * time.Second
	t0 := time.Unix(1_000_000, 0)
	clk := &fakeClock{now: t0}
	fl := &fenceLog{now: clk.Now}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	armAt, stopAt := t0.Add(time.Second), t0.Add(6*time.Minute)
	stopped := make(chan struct{})
	var arm, stop sync.Once
	clk.onWait = func(now time.Time) {
		if !now.Before(armAt) {
			arm.Do(func() { d.armed.Store(true) })
		}
		if !now.Before(stopAt) {
			stop.Do(func() { cancel(); close(stopped) })
		}
	}
	k, err := KeepLease(runCtx, LeaseOptions{
		S3: b, Fence: fl, HotPath: filepath.Join(t.TempDir(), "hot.db"), Log: testLog(t),
		TTL: ttl, Margin: margin, Now: clk.Now, After: clk.After,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The keeper runs through 6 minutes of its clock, unless it gives
	// up (declares the lease lost and stops renewing, so its clock stops).
	lost := func() string {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.lost
	}
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		select {
		case <-stopped:
		default:
			if lost() == "" && time.Now().Before(end) {
				continue
			}
		}
		break
	}
	for _, e := range fl.list() {
		t.Logf("%+6v  until %+6v  %v", e.at.Sub(t0), e.until.Sub(t0), e.why)
	}
	if d.dropped.Load() != 1 {
		t.Fatalf("%d renewal replies dropped, want 1", d.dropped.Load())
	}
	// Renewals go every TTL/4 (30s) and all but one were answered: by
	// +4m the store must be writable again.
	at := t0.Add(4 * time.Minute)
	if l := lost(); l != "" || !fl.allowed(at) {
		t.Fatalf("one lost renewal reply left the store fenced for good (at +%v) though nobody else holds the lease; keeper says lost: %q", at.Sub(t0), l)
	}
}

// TestReviewHolderIDEmptyAfterCrash: HolderID creates <hot>.id with
// O_EXCL and then writes it; a crash (power loss) between the two leaves
// an empty file. No lease can have been taken with an id that was never
// written, so the next start should make a new one rather than refuse to
// mount until someone removes the file.
func TestReviewHolderIDEmptyAfterCrash(t *testing.T) {
	hot := filepath.Join(t.TempDir(), "hot.db")
	if err := os.WriteFile(hot+".id", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, id, err := HolderID(hot)
	if err != nil {
		t.Fatalf("an empty id file (a crash while it was first written): %v", err)
	}
	if len(id) != 32 {
		t.Fatalf("id %q", id)
	}
}

// TestReviewTakeOverReplyLostStillWaitsTTL: --take-over writes the lease at
// once but lets the store change the cold tier only a TTL later, when the
// previous holder has surely stopped. Here MinIO applies the take-over
// write and its reply is lost; the keeper retries, finds the lease under
// its own id and takes it as its own (a restart after a crash). The TTL
// wait must still apply: the previous holder is alive and may write until
// its own deadline.
func TestReviewTakeOverReplyLostStillWaitsTTL(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	live := mustS3(t, srv.Endpoint, bucket)
	if _, err := live.AcquireLease(ctx, s3.LeaseOptions{Holder: "live:/hot.db", ID: "live"}); err != nil {
		t.Fatal(err)
	}
	// The live holder is uploading a segment.
	up := startUpload(t, srv, bucket, "segments/segment-0000000000000001.bin")
	// The lease's Last-Modified, the clean-up's cutoff, has one-second
	// granularity: let the upload's start fall in an earlier second (not
	// an interleaving, only the server's timestamps).
	time.Sleep(1100 * time.Millisecond)
	d := newReplyDropper(t, srv.Endpoint)
	d.armed.Store(true) // the take-over write
	const ttl = 2 * time.Minute
	t0 := time.Unix(1_000_000, 0)
	clk := &fakeClock{now: t0}
	fl := &fenceLog{now: clk.Now}
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	held, firstPass := make(chan struct{}), make(chan struct{})
	var once, passOnce sync.Once
	b := mustS3(t, d.URL, bucket)
	log := testLog(t)
	_, err := KeepLease(kctx, LeaseOptions{
		S3: b, Fence: fl, HotPath: filepath.Join(t.TempDir(), "hot.db"), TakeOver: true,
		TTL: ttl, Now: clk.Now, After: clk.After, Log: log,
		// As mount.Start does: clean up the uploads a crash left. The
		// first pass is what runs at once.
		OnHeld: func(ctx context.Context, l *s3.Lease, holding func() bool) {
			once.Do(func() {
				go func() {
					abortStaleUploads(ctx, b, l, holding, func(time.Duration) <-chan time.Time {
						passOnce.Do(func() { close(firstPass) })
						return nil
					}, log)
					passOnce.Do(func() { close(firstPass) })
				}()
				close(held)
			})
		},
	})
	if err != nil {
		t.Fatalf("take over: %v", err)
	}
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the store was never allowed to write after the take-over")
	}
	<-firstPass
	cancel()
	aborted := !uploads(t, srv, bucket)[up]
	if d.dropped.Load() != 1 {
		t.Fatalf("%d replies dropped, want the take-over's", d.dropped.Load())
	}
	var first time.Time
	for _, e := range fl.list() {
		t.Logf("%+6v  until %+6v  %v", e.at.Sub(t0), e.until.Sub(t0), e.why)
		if e.why == nil && first.IsZero() {
			first = e.at
		}
	}
	if aborted {
		t.Errorf("after a take-over whose reply was lost, the live previous holder's upload in flight was aborted at once (taken for this holder's own, left by a crash)")
	}
	if first.Before(t0.Add(ttl)) {
		t.Fatalf("after a take-over whose reply was lost, the store could write at +%v, before a TTL (%v): the live previous holder may still be writing", first.Sub(t0), ttl)
	}
}
