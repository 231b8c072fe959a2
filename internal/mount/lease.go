package mount

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/internal/control"
)

// Fence is what the lease keeper stops and restarts: the store's changes
// to the cold tier (tier.Store implements it).
type Fence interface {
	Fence(reason error)
	Unfence()
}

// LeaseOptions configure KeepLease.
type LeaseOptions struct {
	S3       *s3.Backend
	Fence    Fence
	HotPath  string // with the host name, names this holder
	TakeOver bool
	Log      *slog.Logger
	// Retry is how often the lease is sought while S3 is unreachable
	// (default 5s).
	Retry time.Duration
}

// LeaseKeeper holds the bucket's writer lease for a mount and keeps
// renewing it; if another writer takes it over, the store is fenced: it
// stops writing to S3 (hot-tier writes go on, nothing is lost). A nil
// LeaseKeeper (no cold tier, or read-only) holds nothing.
type LeaseKeeper struct {
	holder string

	// mu guards the fields below.
	mu      sync.Mutex
	held    *s3.Lease
	renewed time.Time
	ttl     time.Duration
	lost    string
}

// KeepLease takes the bucket's writer lease for this mount. A live holder
// elsewhere refuses the mount (unless TakeOver). When S3 cannot be reached
// at start, the mount comes up anyway with cold writes fenced, and the lease
// is sought in the background until it is held: hot reads and writes need
// no S3.
func KeepLease(ctx context.Context, o LeaseOptions) (*LeaseKeeper, error) {
	if o.Retry == 0 {
		o.Retry = 5 * time.Second
	}
	host, _ := os.Hostname()
	abs, _ := filepath.Abs(o.HotPath)
	k := &LeaseKeeper{holder: host + ":" + abs}
	opts := s3.LeaseOptions{Holder: k.holder, PID: os.Getpid(), TakeOver: o.TakeOver}
	lease, err := o.S3.AcquireLease(ctx, opts)
	if err != nil && !backend.IsTransient(err) {
		return nil, err
	}
	if err != nil {
		o.Log.Warn("S3 unreachable: mounting without the writer lease; no archival or cold deletes until it is held", "op", "lease", "err", err)
		o.Fence.Fence(fmt.Errorf("writer lease not yet held: %w", err))
	}
	go func() {
		for lease == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(o.Retry):
			}
			l, err := o.S3.AcquireLease(ctx, opts)
			switch {
			case err == nil:
				lease = l
				o.Fence.Unfence()
				o.Log.Info("writer lease acquired", "op", "lease", "holder", k.holder)
			case !backend.IsTransient(err):
				o.Log.Error("writer lease held elsewhere: this mount stays without archival and cold deletes", "op", "lease", "err", err)
				o.Fence.Fence(err)
				return
			}
		}
		k.mu.Lock()
		k.held, k.ttl, k.renewed = lease, lease.TTL(), time.Now()
		k.mu.Unlock()
		k.renew(ctx, lease, o)
	}()
	return k, nil
}

// renew renews until ctx ends or the lease is taken over.
func (k *LeaseKeeper) renew(ctx context.Context, lease *s3.Lease, o LeaseOptions) {
	t := time.NewTicker(lease.TTL() / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := lease.Renew(ctx)
		if errors.Is(err, s3.ErrLeaseHeld) {
			o.Log.Error("writer lease lost: no more archival or cold deletes from this mount", "op", "lease", "err", err)
			k.mu.Lock()
			k.lost = oneLine(err)
			k.mu.Unlock()
			o.Fence.Fence(err)
			return
		}
		if err != nil {
			o.Log.Warn("could not renew the writer lease; retrying", "op", "lease", "err", err)
			continue
		}
		k.mu.Lock()
		k.renewed = time.Now()
		k.mu.Unlock()
	}
}

// Release gives the lease up, if it is held.
func (k *LeaseKeeper) Release() {
	if k == nil {
		return
	}
	k.mu.Lock()
	l := k.held
	k.mu.Unlock()
	if l != nil {
		l.Release(context.Background())
	}
}

// Describe adds the lease to a status.
func (k *LeaseKeeper) Describe(st *control.Status) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.held == nil && k.lost == "":
		return
	case k.lost != "":
		st.Lease = "lost: " + k.lost
	default:
		st.Lease = "held"
		st.LeaseExpires = k.renewed.Add(k.ttl).UTC()
	}
	st.LeaseHolder = k.holder
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
