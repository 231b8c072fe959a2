package s3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend"
)

// A writer lease keeps two writable mounts of one bucket and prefix from
// silently overwriting each other. It is an object under the prefix, written
// only with S3 conditional puts (If-None-Match: * to create, If-Match: ETag
// to renew or take over), so of two racing writers exactly one wins. It
// names its holder and an expiry the holder keeps pushing forward.

// ErrLeaseHeld is returned (wrapped) by AcquireLease when another live
// holder has the lease.
var ErrLeaseHeld = errors.New("writer lease held")

// leaseName is the lease object under the prefix; it never parses as a
// segment key.
const leaseName = "scribefs-writer.lease"

type leaseBody struct {
	Holder  string `json:"holder"`
	PID     int    `json:"pid"`
	Expires int64  `json:"expires_unix"`
	Renewed int64  `json:"renewed_unix"`
}

// Lease is a held writer lease.
type Lease struct {
	b      *Backend
	holder string
	pid    int
	ttl    time.Duration

	// mu guards etag and lost.
	mu   sync.Mutex
	etag string
	lost bool
}

// LeaseOptions configure AcquireLease.
type LeaseOptions struct {
	// Holder identifies the writer across restarts (host name and hot-tier
	// path): the same holder coming back after a crash gets the lease at
	// once.
	Holder string
	PID    int
	// TTL is how long the lease lasts without renewal (default 2 minutes).
	TTL time.Duration
	// TakeOver takes the lease even from a live holder.
	TakeOver bool
}

func (b *Backend) leaseKey() string { return b.cfg.Prefix + leaseName }

// AcquireLease takes the writer lease, or fails with ErrLeaseHeld naming the
// live holder.
func (b *Backend) AcquireLease(ctx context.Context, o LeaseOptions) (*Lease, error) {
	if o.TTL <= 0 {
		o.TTL = 2 * time.Minute
	}
	l := &Lease{b: b, holder: o.Holder, pid: o.PID, ttl: o.TTL}
	for attempt := 0; attempt < 5; attempt++ {
		cur, etag, err := b.readLease(ctx)
		if err != nil {
			return nil, err
		}
		if cur != nil && cur.Holder != o.Holder && time.Now().Unix() < cur.Expires && !o.TakeOver {
			return nil, fmt.Errorf("%w: bucket %s prefix %q has a writable mount by %s (pid %d) until %s; mount --read-only, wait for it to expire, or use mount --take-over",
				ErrLeaseHeld, b.cfg.Bucket, b.cfg.Prefix, cur.Holder, cur.PID, time.Unix(cur.Expires, 0).UTC().Format(time.RFC3339))
		}
		err = l.write(ctx, etag, cur == nil)
		if errors.Is(err, backend.ErrStale) {
			continue // someone wrote it between our read and write: look again
		}
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	return nil, fmt.Errorf("%w: bucket %s prefix %q: the lease keeps changing under us", ErrLeaseHeld, b.cfg.Bucket, b.cfg.Prefix)
}

func (b *Backend) readLease(ctx context.Context) (*leaseBody, string, error) {
	out, err := b.client.GetObject(ctx, &s3api.GetObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.leaseKey())})
	if err != nil {
		err = b.fail("read writer lease", err)
		if errors.Is(err, backend.ErrNotFound) {
			return nil, "", nil
		}
		return nil, "", err
	}
	defer out.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(out.Body, 64<<10))
	if err != nil {
		return nil, "", b.fail("read writer lease", err)
	}
	var lb leaseBody
	if json.Unmarshal(raw, &lb) != nil {
		lb = leaseBody{} // unreadable: treat as expired, but keep its ETag for If-Match
	}
	return &lb, aws.ToString(out.ETag), nil
}

// write puts a fresh lease body, conditional on the object being absent
// (create) or still being etag.
func (l *Lease) write(ctx context.Context, etag string, create bool) error {
	now := time.Now()
	body, _ := json.Marshal(leaseBody{Holder: l.holder, PID: l.pid, Expires: now.Add(l.ttl).Unix(), Renewed: now.Unix()})
	in := &s3api.PutObjectInput{Bucket: &l.b.cfg.Bucket, Key: aws.String(l.b.leaseKey()), Body: bytes.NewReader(body), ContentType: aws.String("application/json")}
	if create {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(etag)
	}
	out, err := l.b.client.PutObject(ctx, in)
	if err != nil {
		return l.b.fail("write writer lease", err)
	}
	l.mu.Lock()
	l.etag = aws.ToString(out.ETag)
	l.mu.Unlock()
	return nil
}

// Renew pushes the expiry forward. It fails with ErrLeaseHeld once another
// writer has taken the lease over; the caller must then stop writing.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	etag, lost := l.etag, l.lost
	l.mu.Unlock()
	if lost {
		return ErrLeaseHeld
	}
	err := l.write(ctx, etag, false)
	if errors.Is(err, backend.ErrStale) || errors.Is(err, backend.ErrNotFound) {
		l.mu.Lock()
		l.lost = true
		l.mu.Unlock()
		cur, _, _ := l.b.readLease(ctx)
		who := "another writer"
		if cur != nil && cur.Holder != "" {
			who = cur.Holder
		}
		return fmt.Errorf("%w: taken over by %s", ErrLeaseHeld, who)
	}
	return err
}

// TTL is the lease's lifetime without renewal.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Release gives the lease up (on a clean unmount), if it is still ours.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	etag, lost := l.etag, l.lost
	l.mu.Unlock()
	if lost {
		return nil
	}
	// MinIO ignores If-Match on DELETE: check first, then delete.
	if _, cur, err := l.b.readLease(ctx); err != nil || cur != etag {
		return err
	}
	_, err := l.b.client.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &l.b.cfg.Bucket, Key: aws.String(l.b.leaseKey()), IfMatch: aws.String(etag)})
	if err != nil {
		return l.b.fail("release writer lease", err)
	}
	return nil
}
