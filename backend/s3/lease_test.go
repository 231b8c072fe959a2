package s3

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/scribefs/scribefs/internal/miniotest"
)

// TestLease checks the writer lease against MinIO, including that MinIO
// honours the conditional puts it rests on.
func TestLease(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	a := mustNew(t, testConfig(srv.Endpoint, bucket))
	b := mustNew(t, testConfig(srv.Endpoint, bucket))

	la, err := a.AcquireLease(ctx, LeaseOptions{Holder: "host-a:/var/lib/a.db", PID: 1})
	if err != nil {
		t.Fatal(err)
	}
	// a second writer is refused, with the holder named
	_, err = b.AcquireLease(ctx, LeaseOptions{Holder: "host-b:/var/lib/b.db", PID: 2})
	if !errors.Is(err, ErrLeaseHeld) || !strings.Contains(err.Error(), "host-a:/var/lib/a.db") {
		t.Fatalf("second writer: %v", err)
	}
	// the server must refuse a create over an existing lease (If-None-Match)
	if err := (&Lease{b: b, holder: "x", ttl: time.Minute}).write(ctx, "", true); err == nil {
		t.Fatal("MinIO accepted If-None-Match: * over an existing object: conditional puts are not honoured")
	}
	// and a renewal with a wrong ETag (If-Match)
	if err := (&Lease{b: b, holder: "x", ttl: time.Minute}).write(ctx, `"not-the-etag"`, false); err == nil {
		t.Fatal("MinIO accepted If-Match with a wrong ETag: conditional puts are not honoured")
	}
	if err := la.Renew(ctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	// the same holder restarting after a crash gets it back at once
	la2, err := a.AcquireLease(ctx, LeaseOptions{Holder: "host-a:/var/lib/a.db", PID: 3})
	if err != nil {
		t.Fatalf("same holder after crash: %v", err)
	}
	// take-over: the old lease object is gone from under la2
	lb, err := b.AcquireLease(ctx, LeaseOptions{Holder: "host-b:/var/lib/b.db", PID: 2, TakeOver: true})
	if err != nil {
		t.Fatalf("take over: %v", err)
	}
	if err := la2.Renew(ctx); !errors.Is(err, ErrLeaseHeld) || !strings.Contains(err.Error(), "host-b") {
		t.Fatalf("renew after take-over: %v", err)
	}
	// an expired lease is free
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	short, err := a.AcquireLease(ctx, LeaseOptions{Holder: "host-a:/var/lib/a.db", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_ = short
	time.Sleep(2100 * time.Millisecond)
	if _, err := b.AcquireLease(ctx, LeaseOptions{Holder: "host-b:/var/lib/b.db"}); err != nil {
		t.Fatalf("expired lease not free: %v", err)
	}
}
