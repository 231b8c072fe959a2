package mount

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/retry"
	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/internal/control"
	"github.com/scribefs/scribefs/internal/faultproxy"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

// TestPartitionLongerThanTTL: holder A archives (write-through) and
// deletes through its own network (a fault proxy) while a partition cuts
// it off from S3 for longer than the lease's TTL; host B, on another
// network, takes the lease after watching it unchanged for a TTL, and the
// partition heals. A must send no write to a segment after its deadline:
// not during the partition (retries), nor after it heals (its archiver,
// deletes and replays going on), until it learns it lost the lease.
func TestPartitionLongerThanTTL(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	pa := mustProxy(t, srv.Endpoint) // A's network
	rawA := mustS3(t, pa.URL, bucket)
	coldA := retry.New(rawA, retry.Policy{MaxRetries: 3, BaseDelay: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond})
	storeA, hotA := mustStore(t, coldA, tier.Config{WriteThrough: true, CheckInterval: 200 * time.Millisecond, Refresh: 300 * time.Millisecond})
	const ttl = 4 * time.Second // renewed every 1s; A stops 1s before it could expire
	actx, stopA := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopA(); wg.Wait() }()
	kA, err := KeepLease(actx, LeaseOptions{S3: rawA, Fence: storeA, HotPath: hotA, TTL: ttl, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); storeA.Run(actx) }()
	// The workload: write-through puts and deletes of cold segments.
	var next atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for actx.Err() == nil {
				id := segment.ID(next.Add(1))
				storeA.Put(actx, id, bytes.NewReader([]byte("segment")), 7, time.Time{})
				if id > 8 {
					storeA.Delete(actx, id-8)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	writes := func() int {
		return pa.Count("PUT", "segment-") + pa.Count("POST", "segment-") + pa.Count("DELETE", "segment-")
	}
	time.Sleep(time.Second)
	if writes() == 0 {
		t.Fatal("no S3 writes from A before the partition")
	}
	pa.Set(faultproxy.Fault{Kind: faultproxy.Stall, After: -1}) // nothing gets through
	partitioned := time.Now()
	time.Sleep(100 * time.Millisecond) // a renewal already past the proxy lands
	deadline := kA.Deadline()
	time.Sleep(time.Until(deadline) + 20*time.Millisecond)
	atDeadline := writes()

	// B takes the lease over its own network, after watching it for a TTL
	// (refused while the lease's expiry, by A's clock, lies ahead).
	bB := mustS3(t, srv.Endpoint, bucket)
	var lB *s3.Lease
	for try := 0; lB == nil; try++ {
		lB, err = bB.AcquireLease(ctx, s3.LeaseOptions{Holder: "host-b:/hot.db", ID: "b", TTL: ttl, Wait: true})
		if err != nil && (!errors.Is(err, s3.ErrLeaseHeld) || try == 50) {
			t.Fatalf("B: %v", err)
		}
		if err != nil {
			time.Sleep(200 * time.Millisecond)
		}
	}
	taken := time.Now()
	atHeal := writes()
	pa.Clear() // the partition heals
	healed := time.Now()
	time.Sleep(3 * time.Second) // A goes on for three renewal periods
	after := writes()
	var st control.Status
	kA.Describe(&st)
	t.Logf("partition %v; A's deadline %v after it began; B took the lease %v after A's deadline; A's segment writes: %d before its deadline, %d after it (%d while partitioned past it, %d after the partition healed, 3s)",
		healed.Sub(partitioned).Round(time.Millisecond), deadline.Sub(partitioned).Round(time.Millisecond), taken.Sub(deadline).Round(time.Millisecond),
		atDeadline, after-atDeadline, atHeal-atDeadline, after-atHeal)
	if after != atDeadline {
		t.Fatalf("A sent %d writes to segments after its lease's deadline (log: %q)", after-atDeadline, pa.Log()[len(pa.Log())-min(20, len(pa.Log())):])
	}
	if !taken.After(deadline) {
		t.Fatalf("B took the lease at %v, before A's deadline %v", taken, deadline)
	}
	if !strings.HasPrefix(st.Lease, "lost") {
		t.Fatalf("A's lease after the partition healed: %q, want lost", st.Lease)
	}
	if err := lB.Renew(ctx); err != nil {
		t.Fatalf("B's lease: %v", err)
	}
}
