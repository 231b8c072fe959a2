package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend"
)

// A writer lease keeps two writable mounts of one bucket and prefix from
// silently overwriting each other. It is an object under the prefix, written
// only with S3 conditional puts (If-None-Match: * to create, If-Match: ETag
// to renew or take over), so of two racing writers exactly one wins.
//
// No decision rests on comparing clocks of different hosts. The body's
// expiry (the holder's wall clock) is for people, and for a quick refusal
// while it lies in the future; a contender takes another holder's lease
// only after it has seen the same lease object (the same ETag) unchanged
// for a full TTL on its own monotonic clock, or with TakeOver. The holder,
// in turn, counts its lease valid for TTL from the moment it sent the last
// write that succeeded (ValidUntil, monotonic), which is never later than
// when any contender began to watch that write: a holder that stops
// changing the bucket before ValidUntil (minus a margin for requests in
// flight and clock rate) is out before anyone can take over.
//
// A write whose reply is lost may have landed: every body carries a fresh
// nonce, and the holder remembers those it sent, so a renewal that finds
// an ETag it has not seen (412) and the object holding one of its own
// bodies adopts it instead of counting the lease lost; AcquireLease with
// TakeOver that finds its own ID counts it as the take-over that landed
// (the previous holder may still be writing), never as a crash restart.
// Release does not delete the object (MinIO ignores If-Match on DELETE,
// so a delete could undo a take-over): it writes a body marked released,
// conditional on its own ETag, which anyone then takes at once.
//
// Everything rests on the store honouring the conditions (If-None-Match
// and If-Match on PUT); ProbeConditionalPuts checks that it does.

// Errors returned (wrapped) by AcquireLease and Renew.
var (
	// ErrLeaseHeld is returned when another live holder has the lease, or
	// took it over.
	ErrLeaseHeld = errors.New("writer lease held")
	// ErrLeaseUnconfirmed is returned by AcquireLease without Wait when
	// another holder's lease looks expired by this host's wall clock: that
	// proves nothing, and only watching it for a TTL (Wait) does.
	ErrLeaseUnconfirmed = errors.New("writer lease of another holder looks expired, not yet confirmed")
	// ErrConditionalPutsIgnored is returned by ProbeConditionalPuts when
	// the store accepted a conditional create of an object that exists,
	// or an overwrite on an ETag the object does not have.
	ErrConditionalPutsIgnored = errors.New("the S3 store ignores conditional puts, so the writer lease cannot keep two writers apart")
)

// leaseName is the lease object under the prefix; it never parses as a
// segment key.
const leaseName = "scribefs-writer.lease"

// DefaultLeaseTTL is a lease's lifetime without renewal.
const DefaultLeaseTTL = 2 * time.Minute

type leaseBody struct {
	Holder  string `json:"holder"`
	ID      string `json:"holder_id,omitempty"`
	PID     int    `json:"pid"`
	Expires int64  `json:"expires_unix"` // the holder's wall clock: informational
	Renewed int64  `json:"renewed_unix"`
	TTLms   int64  `json:"ttl_ms,omitempty"`
	// Nonce differs in every write, so every write has a new ETag (the
	// ETag is the body's MD5) and a contender sees each renewal.
	Nonce string `json:"nonce,omitempty"`
	// Released marks a lease its holder gave up (Release) with a write
	// conditional on its own last ETag: anyone may take it at once.
	Released bool `json:"released,omitempty"`
}

// ttl is the lifetime its holder gives the lease (a contender watches it
// at least this long).
func (lb *leaseBody) ttl() time.Duration { return time.Duration(lb.TTLms) * time.Millisecond }

// Lease is a held writer lease.
type Lease struct {
	b   *Backend
	o   LeaseOptions
	ttl time.Duration

	// tookOver names the live holder TakeOver took the lease from;
	// resumed is set when the lease was this holder's own already.
	tookOver string
	resumed  bool

	// mu guards the fields below.
	mu         sync.Mutex
	etag       string
	sent       []sentWrite // the latest writes sent, oldest first
	lost       bool
	validUntil time.Time // monotonic (o.Now): sent time of the last write that succeeded + ttl
}

// LeaseOptions configure AcquireLease.
type LeaseOptions struct {
	// Holder names the writer for people (host name and hot-tier path).
	Holder string
	// ID identifies the writer across restarts: a random id kept beside
	// its hot-tier file. The same ID coming back after a crash gets the
	// lease at once; two hosts with the same Holder (clones) do not.
	ID  string
	PID int
	// TTL is how long the lease lasts without renewal (DefaultLeaseTTL).
	TTL time.Duration
	// TakeOver takes the lease even from a live holder.
	TakeOver bool
	// Wait, when another holder's lease looks expired, watches it for a
	// full TTL (polling every Poll, default TTL/8) and takes it if it did
	// not change; it fails with ErrLeaseHeld if it did. Without Wait,
	// AcquireLease returns ErrLeaseUnconfirmed at once instead.
	Wait bool
	Poll time.Duration
	// Watching, when set, is called when a watch begins.
	Watching func(holder string, ttl time.Duration)

	// Now is the monotonic clock (default time.Now); Wall the wall clock
	// written into the lease and compared with its expiry for a quick
	// refusal (default time.Now); After waits (default time.After). Tests
	// inject them instead of sleeping.
	Now   func() time.Time
	Wall  func() time.Time
	After func(time.Duration) <-chan time.Time
}

func (o *LeaseOptions) setDefaults() {
	if o.TTL <= 0 {
		o.TTL = DefaultLeaseTTL
	}
	if o.Poll <= 0 {
		o.Poll = o.TTL / 8
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Wall == nil {
		o.Wall = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
}

func (b *Backend) leaseKey() string { return b.cfg.Prefix + leaseName }

// AcquireLease takes the writer lease: at once when there is none, when it
// is this holder's own (same ID) or with TakeOver; after watching it
// unchanged for a TTL when it is another holder's and looks expired (see
// Wait). It fails with ErrLeaseHeld naming a live holder.
func (b *Backend) AcquireLease(ctx context.Context, o LeaseOptions) (*Lease, error) {
	o.setDefaults()
	l := &Lease{b: b, o: o, ttl: o.TTL}
	var (
		watched string    // the ETag being watched, "" before a watch
		since   time.Time // when it was first seen (o.Now)
		races   int
	)
	for {
		cur, etag, err := b.readLease(ctx)
		if err != nil {
			return nil, err
		}
		switch {
		case cur == nil:
			err = l.write(ctx, "", true)
		case o.ID != "" && cur.ID == o.ID && o.TakeOver:
			// Our own id under TakeOver: most likely a take-over of
			// ours that landed but whose reply was lost, so the
			// previous holder may be alive and writing. It counts as
			// a take-over (wait a TTL), never as a crash restart.
			l.tookOver = "an unknown holder (the lease already had this holder's id: a take-over whose reply was lost)"
			err = l.write(ctx, etag, false)
		case o.ID != "" && cur.ID == o.ID && !cur.Released:
			l.resumed = true
			err = l.write(ctx, etag, false)
		case cur.Released:
			// Its holder gave it up with a conditional write: nobody
			// is writing under it, so it is free at once.
			err = l.write(ctx, etag, false)
		case o.TakeOver:
			l.tookOver = cur.Holder
			err = l.write(ctx, etag, false)
		case watched != "" && etag != watched:
			return nil, b.heldError(cur, "it was renewed while watched")
		case o.Wall().Unix() < cur.Expires:
			return nil, b.heldError(cur, "")
		default:
			// Expired by this host's wall clock, which proves nothing:
			// take it only once it has not changed for a full TTL here.
			ttl := max(o.TTL, cur.ttl())
			if watched == "" {
				if !o.Wait {
					return nil, fmt.Errorf("%w: bucket %s prefix %q: %s (pid %d) must be seen unchanged for %v first",
						ErrLeaseUnconfirmed, b.cfg.Bucket, b.cfg.Prefix, cur.Holder, cur.PID, ttl)
				}
				watched, since = etag, o.Now()
				if o.Watching != nil {
					o.Watching(cur.Holder, ttl)
				}
			}
			if left := ttl - o.Now().Sub(since); left > 0 {
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-o.After(min(o.Poll, left)):
				}
				continue
			}
			err = l.write(ctx, etag, false)
		}
		if errors.Is(err, backend.ErrStale) && races < 5 {
			// Someone wrote it between our read and write: look again
			// (a watch then finds its ETag changed).
			races++
			continue
		}
		if errors.Is(err, backend.ErrStale) {
			return nil, fmt.Errorf("%w: bucket %s prefix %q: the lease keeps changing under us", ErrLeaseHeld, b.cfg.Bucket, b.cfg.Prefix)
		}
		if err != nil {
			return nil, err
		}
		return l, nil
	}
}

func (b *Backend) heldError(cur *leaseBody, why string) error {
	if why != "" {
		why = " (" + why + ")"
	}
	return fmt.Errorf("%w: bucket %s prefix %q has a writable mount by %s (pid %d), renewed %s%s",
		ErrLeaseHeld, b.cfg.Bucket, b.cfg.Prefix, cur.Holder, cur.PID,
		time.Unix(cur.Renewed, 0).UTC().Format(time.RFC3339), why)
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
	return parseLease(raw), aws.ToString(out.ETag), nil
}

// maxLeaseTTL bounds the lifetime a lease object may claim: a contender
// watches a lease for its TTL, and a hostile object could claim years.
const maxLeaseTTL = time.Hour

// parseLease reads a lease object, which anyone who can write the bucket
// may have written: an unreadable one is watched like any other, then
// replaced; its TTL is bounded by maxLeaseTTL; its holder's name, which
// errors quote, is cut to 200 bytes of printable text.
func parseLease(raw []byte) *leaseBody {
	var lb leaseBody
	if json.Unmarshal(raw, &lb) != nil {
		return &leaseBody{Holder: "an unreadable lease"}
	}
	lb.TTLms = min(max(lb.TTLms, 0), maxLeaseTTL.Milliseconds())
	lb.Holder = printable(lb.Holder, 200)
	lb.ID = printable(lb.ID, 64)
	return &lb
}

// printable quotes the non-printable runes of s and cuts it to about n
// bytes, so that it can stand in a one-line message.
func printable(s string, n int) string {
	q := strconv.Quote(s)
	q = q[1 : len(q)-1]
	if len(q) > n {
		q = q[:n] + "..."
	}
	return q
}

// write puts a fresh lease body, conditional on the object being absent
// (create) or still being etag. On success the lease is valid until TTL
// after the request was sent.
func (l *Lease) write(ctx context.Context, etag string, create bool) error {
	return l.put(ctx, etag, create, false)
}

// put writes a lease body (released: one that gives the lease up) as
// write does. The nonce of every body sent is remembered before it is
// sent, so that a write whose reply was lost is recognised as ours later.
func (l *Lease) put(ctx context.Context, etag string, create, released bool) error {
	sent, wall := l.o.Now(), l.o.Wall()
	lb := leaseBody{
		Holder: l.o.Holder, ID: l.o.ID, PID: l.o.PID,
		Expires: wall.Add(l.ttl).Unix(), Renewed: wall.Unix(), TTLms: l.ttl.Milliseconds(), Nonce: nonce(),
	}
	if released {
		lb.Expires, lb.Released = 0, true
	}
	body, _ := json.Marshal(lb)
	l.mu.Lock()
	l.sent = append(l.sent, sentWrite{nonce: lb.Nonce, at: sent})
	if len(l.sent) > maxSentWrites {
		l.sent = l.sent[len(l.sent)-maxSentWrites:]
	}
	l.mu.Unlock()
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
	l.validUntil = sent.Add(l.ttl)
	l.mu.Unlock()
	return nil
}

// sentWrite is a lease write this holder sent: its body's nonce and when
// it was sent (o.Now).
type sentWrite struct {
	nonce string
	at    time.Time
}

// maxSentWrites bounds the writes remembered: only those since the last
// one whose reply arrived matter, and renewals fail in a row only a few
// times before the lease would expire.
const maxSentWrites = 16

// ownWrite reports whether cur is a write this holder sent (its ID and the
// nonce of a body it sent), and when that write was sent.
func (l *Lease) ownWrite(cur *leaseBody) (time.Time, bool) {
	if cur == nil || l.o.ID == "" || cur.ID != l.o.ID || cur.Nonce == "" {
		return time.Time{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.sent {
		if w.nonce == cur.Nonce {
			return w.at, true
		}
	}
	return time.Time{}, false
}

// Renew pushes the expiry forward. It fails with ErrLeaseHeld once another
// writer has taken the lease over; the caller must then stop writing. Any
// other error leaves the lease valid only until ValidUntil.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	etag, lost := l.etag, l.lost
	l.mu.Unlock()
	if lost {
		return ErrLeaseHeld
	}
	err := l.write(ctx, etag, false)
	if errors.Is(err, backend.ErrStale) {
		// A renewal of ours whose reply was lost leaves our own body
		// under an ETag we have not seen: if the object is a write we
		// sent (our ID and its nonce), adopt its ETag and renew again.
		// Its validity counts from when that write was sent, which
		// no contender can have watched from earlier.
		cur, curTag, rerr := l.b.readLease(ctx)
		if rerr != nil {
			return rerr // unknown yet: not lost, retried
		}
		if at, ok := l.ownWrite(cur); ok && !cur.Released {
			l.mu.Lock()
			l.etag = curTag
			if v := at.Add(l.ttl); v.After(l.validUntil) {
				l.validUntil = v
			}
			l.mu.Unlock()
			err = l.write(ctx, curTag, false)
		}
	}
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

// ValidUntil is when the lease ends by the holder's monotonic clock
// (LeaseOptions.Now) unless renewed: TTL after the last successful write
// was sent. No other holder can have taken it before then, except with
// TakeOver.
func (l *Lease) ValidUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validUntil
}

// TookOver names the holder whose lease TakeOver took, "" if none. That
// holder may go on writing until its own lease would have expired: a TTL
// after the take-over at the latest.
func (l *Lease) TookOver() string { return l.tookOver }

// Resumed reports whether the lease was this holder's own (the same ID)
// when it was taken: a restart after a crash.
func (l *Lease) Resumed() bool { return l.resumed }

// TTL is the lease's lifetime without renewal.
func (l *Lease) TTL() time.Duration { return l.ttl }

// ServerTime is the store's clock when the lease was last written (the
// object's Last-Modified), for comparing with other times the store reports.
func (l *Lease) ServerTime(ctx context.Context) (time.Time, error) {
	out, err := l.b.client.HeadObject(ctx, &s3api.HeadObjectInput{Bucket: &l.b.cfg.Bucket, Key: aws.String(l.b.leaseKey())})
	if err != nil {
		return time.Time{}, l.b.fail("stat writer lease", err)
	}
	return aws.ToTime(out.LastModified), nil
}

// Release gives the lease up (on a clean unmount), if it is still ours.
//
// It does not delete the lease object: MinIO ignores If-Match on DELETE,
// so a delete after a check could remove a lease another writer took over
// in between. It instead writes a body marked released, conditional on our
// own last ETag, as every renewal is: if someone took the lease over, the
// write fails and their lease stands. A contender takes a released lease
// at once, without watching it: its holder has stopped writing, and said
// so with a write that could only land while the lease was still its own.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	etag, lost := l.etag, l.lost
	l.lost = true // no renewal after a release
	l.mu.Unlock()
	if lost {
		return nil
	}
	err := l.put(ctx, etag, false, true)
	if errors.Is(err, backend.ErrStale) || errors.Is(err, backend.ErrNotFound) {
		return nil // taken over, or removed by hand: not ours to release
	}
	if err != nil {
		return fmt.Errorf("release writer lease: %w", err)
	}
	return nil
}

// ProbeConditionalPuts checks that the store honours If-None-Match and
// If-Match on PUT, which the writer lease rests on (creation on the one,
// renewal, take-over and release on the other): it creates a probe object
// under the prefix twice, conditionally, and the second create must fail;
// then it overwrites it on an ETag it does not have, which must fail too.
// It fails with ErrConditionalPutsIgnored when either succeeds. The probe
// object is removed.
func (b *Backend) ProbeConditionalPuts(ctx context.Context) error {
	const op = "probe conditional puts"
	key := b.cfg.Prefix + "scribefs-probe-" + nonce()
	put := func(in *s3api.PutObjectInput) error {
		in.Bucket, in.Key, in.Body = &b.cfg.Bucket, aws.String(key), bytes.NewReader(nil)
		if _, err := b.client.PutObject(ctx, in); err != nil {
			return b.fail(op, err)
		}
		return nil
	}
	create := func() error { return put(&s3api.PutObjectInput{IfNoneMatch: aws.String("*")}) }
	if err := create(); err != nil {
		return err
	}
	defer b.client.DeleteObject(context.WithoutCancel(ctx), &s3api.DeleteObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(key)})
	switch err := create(); {
	case err == nil:
		return fmt.Errorf("%w (If-None-Match): bucket %s at %s", ErrConditionalPutsIgnored, b.cfg.Bucket, b.endpointName())
	case !errors.Is(err, backend.ErrStale):
		return err
	}
	// No object's ETag: the empty body's MD5 is d41d8cd9..., never this.
	switch err := put(&s3api.PutObjectInput{IfMatch: aws.String(`"00000000000000000000000000000000"`)}); {
	case err == nil:
		return fmt.Errorf("%w (If-Match): bucket %s at %s", ErrConditionalPutsIgnored, b.cfg.Bucket, b.endpointName())
	case !errors.Is(err, backend.ErrStale):
		return err
	}
	return nil
}

// nonce is 16 random hex digits.
func nonce() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
