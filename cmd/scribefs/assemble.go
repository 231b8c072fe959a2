package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/compress"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/backend/metrics"
	"github.com/scribefs/scribefs/backend/retry"
	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/cache"
	"github.com/scribefs/scribefs/internal/config"
	"github.com/scribefs/scribefs/internal/control"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

// assembled is a store opened in this process, with what closes it.
type assembled struct {
	store *tier.Store
	hot   *local.Backend
	s3    *s3.Backend // nil without a cold tier
	cfg   *config.Config
}

// assemble builds the store from the configuration. This is the one place
// that shows how the layers stack:
//
//	tier.Store
//	├── hot:   local.Backend (bbolt) + its Index of the cold tier
//	├── cold:  metrics.Wrap(retry.New(compress.New(metrics.WrapS3(s3.Backend))), "cold")
//	│          (retries: storage.s3.max_retries; metrics only when m != nil;
//	│          compress always reads its block format, tiering.compression
//	│          only picks what Put writes)
//	└── cache: cache.Blocks           (bounded by cache.max_bytes)
//
// With metrics, the outer wrapper times what the store asked of the cold
// tier (retries included) and the inner one counts each request S3 saw;
// retries are counted through retry.Policy.OnRetry. compress sits under
// retry so that a retried request re-runs the whole compressed operation
// (its footer probe included), and above the S3 metrics so those count every
// request it makes. The hot tier and the
// store as the filesystem sees it are measured by observedStore.
func assemble(ctx context.Context, cfg *config.Config, readOnly, mounted bool, log *slog.Logger, m *metrics.Metrics) (*assembled, error) {
	hot, err := local.Open(cfg.Storage.Hot.Path, local.Options{})
	if err != nil {
		return nil, err
	}
	a := &assembled{hot: hot, cfg: cfg}
	var cold backend.Backend
	tcfg := tier.Config{
		MaxSegmentBytes:  cfg.Storage.MaxSegmentBytes,
		HotMaxBytes:      cfg.Storage.Hot.MaxBytes,
		SpoolDir:         cfg.Storage.Hot.Spool(),
		ArchiveAfter:     cfg.Tiering.ArchiveAfter,
		CheckInterval:    cfg.Tiering.CheckInterval,
		PrefetchSegments: cfg.Cache.PrefetchSegments,
		ReadOnly:         readOnly,
		BackgroundSync:   mounted,
		Logger:           log,
	}
	if sc := cfg.Storage.S3; sc != nil {
		var mode compress.Mode
		if mode, err = compress.ParseMode(cfg.Tiering.Compression); err != nil {
			hot.Close()
			return nil, err
		}
		a.s3, err = s3.New(ctx, s3Config(sc, readOnly))
		if err != nil {
			hot.Close()
			return nil, err
		}
		if mounted && mode == compress.Zstd {
			warnZstdShared(ctx, a.s3, sc.Bucket, log)
		}
		cold = a.s3
		if m != nil {
			cold = m.WrapS3(cold)
		}
		if cold, err = compress.New(cold, compress.Config{Mode: mode}); err != nil {
			a.s3.Close()
			hot.Close()
			return nil, err
		}
		cold = retry.New(cold, retry.Policy{
			MaxRetries: sc.MaxRetries,
			BaseDelay:  100 * time.Millisecond,
			MaxDelay:   5 * time.Second,
			OnRetry: func(op string, id segment.ID, attempt int, err error) {
				if m != nil {
					m.OnRetry(op, id, attempt, err)
				}
				log.Debug("retrying S3 request", "op", op, "segment", id, "attempt", attempt, "err", err)
			},
		})
		if m != nil {
			cold = m.Wrap(cold, "cold")
		}
		tcfg.Refresh = sc.Refresh
		tcfg.WriteThrough = cfg.Tiering.ArchiveAfter == 0
		tcfg.VerifyMerkle = cfg.Tiering.VerifyMerkle
		tcfg.Health = a.s3.Health
	}
	a.store, err = tier.New(hot, hot.Index(), cold, cache.New(cfg.Cache.MaxBytes), tcfg)
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// The bbolt file is both the store's hot tier and its index.
var (
	_ tier.Hot   = (*local.Backend)(nil)
	_ tier.Index = (*local.Index)(nil)
)

// Close closes the backends.
func (a *assembled) Close() error {
	if a.s3 != nil {
		a.s3.Close()
	}
	return a.hot.Close()
}

// api returns the control API of this in-process store. describe, when not
// nil, adds what only a mount knows (lease, recent errors).
func (a *assembled) api(mountpoint string, describe func(*control.Status)) *control.Local {
	return &control.Local{
		Store:   a.store,
		OnClose: a.Close,
		Describe: func(st *control.Status) {
			if describe != nil {
				describe(st)
			}
			st.Mounted = mountpoint != ""
			st.Mountpoint = mountpoint
			st.HotPath = a.cfg.Storage.Hot.Path
			st.HotMaxBytes = a.cfg.Storage.Hot.MaxBytes
			if sc := a.cfg.Storage.S3; sc != nil {
				st.ColdTier = fmt.Sprintf("s3://%s/%s (%s)", sc.Bucket, sc.Prefix, endpointOf(sc))
			}
		},
	}
}

func endpointOf(sc *config.S3) string {
	if sc.Endpoint != "" {
		return sc.Endpoint
	}
	return "AWS " + sc.Region
}

// s3Config is the S3 backend's configuration from [storage.s3].
func s3Config(sc *config.S3, readOnly bool) s3.Config {
	return s3.Config{
		Bucket:             sc.Bucket,
		Region:             sc.Region,
		Endpoint:           sc.Endpoint,
		AccessKeyID:        sc.AccessKeyID,
		SecretAccessKey:    sc.SecretAccessKey.Reveal(),
		PathStyle:          sc.PathStyle,
		PoolSize:           sc.PoolSize,
		Timeout:            sc.Timeout,
		Prefix:             sc.Prefix,
		InsecureSkipVerify: sc.InsecureSkipVerify,
		ReadOnly:           readOnly,
	}
}

// warnZstdShared logs, once per mount, that nodes sharing the bucket cannot
// read what a zstd mount archives, when the bucket shows signs of them (a
// sidecar under the prefix). A failed look is not worth failing the mount.
func warnZstdShared(ctx context.Context, b *s3.Backend, bucket string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if shared, err := b.HasSidecars(ctx); err == nil && shared {
		log.Warn("compression = \"zstd\" on a bucket shared with Scribe Ledger nodes (it holds segment sidecars): "+
			"nodes cannot read zstd segments, so the segments this mount archives are invisible to them; "+
			"use compression = \"gzip\" or \"none\" for segments nodes must read",
			"bucket", bucket)
	}
}
