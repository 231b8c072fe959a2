package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/metrics"
	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/fs"
	"github.com/scribefs/scribefs/internal/control"
)

const mountDescription = `Serves the store as a filesystem: MOUNTPOINT/segments/<id> is one regular
file per segment. cat, cp, rsync, tar and rm work on segments as they are;
a file written there is published atomically on close() or fsync().

In the foreground (the default) the command runs until the filesystem is
unmounted: 'umount MOUNTPOINT', 'fusermount3 -u MOUNTPOINT', SIGINT or
SIGTERM, which give files open for writing --grace to close. This is how a
systemd unit runs it (see contrib/scribefs@.service).

With --daemon it returns once the mount is ready (exit 0), or fails with the
reason (exit 1), and keeps serving in the background, logging to --log-file.
mount(8) and /etc/fstab use it through the mount.fuse.scribefs helper that
'make install' puts in /sbin:

  scribefs /mnt/segments fuse.scribefs config=/etc/scribefs/config.toml,_netdev 0 0

While the mount runs, the other scribefs commands (status, verify, put, ...)
are served by this process over a unix socket beside the hot-tier file.
With --metrics-addr it serves Prometheus metrics (scribefs_*) at
http://ADDR/metrics.

Examples:
  scribefs --config /etc/scribefs/config.toml mount /mnt/segments
  scribefs --config F mount --metrics-addr 127.0.0.1:9464 --log-format json --daemon /mnt/segments`

// readyEnv names the descriptor on which a --daemon child reports that the
// mount is ready ("ok") or why it failed. It is how the parent learns the
// outcome without polling the mount point.
const readyEnv = "SCRIBEFS_READY_FD"

func mountCommand() *cli.Command {
	return &cli.Command{
		Name:        "mount",
		Usage:       "serve the store at MOUNTPOINT/segments/<id> until unmounted",
		Description: mountDescription,
		ArgsUsage:   "MOUNTPOINT",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "read-only", Usage: "refuse every change (EROFS); the cold tier is never written"},
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users access the mount (needs user_allow_other in /etc/fuse.conf for non-root)"},
			&cli.DurationFlag{Name: "grace", Value: 30 * time.Second, Usage: "on SIGINT/SIGTERM, how long files open for writing may take to close; writes not closed by then are discarded"},
			&cli.BoolFlag{Name: "daemon", Aliases: []string{"d"}, Usage: "return once the mount is ready and keep serving in the background, logging to --log-file"},
			&cli.StringFlag{Name: "log-file", Usage: "with --daemon, append logs to `FILE` (default: scribefs.log beside the hot-tier file)"},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error (default: the global --log-level, else info)"},
			&cli.StringFlag{Name: "log-format", Usage: "text or json (default: the global --log-format, else text)"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics at http://`ADDR`/metrics, e.g. 127.0.0.1:9464 (default: off)"},
			&cli.BoolFlag{Name: "debug-fuse", Usage: "log every FUSE request"},
			&cli.BoolFlag{Name: "take-over", Usage: "take the bucket's writer lease even from a live holder (that mount stops writing to S3)"},
		},
		Action: func(c *cli.Context) (err error) {
			if c.NArg() != 1 {
				return usagef("mount takes one MOUNTPOINT")
			}
			ready := takeReadyPipe()
			defer func() { ready.report(err) }()
			ring := newLogRing(20)
			log, err := newLogger(c, c.App.ErrWriter, ring)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			limitMemory(cfg.Cache.MaxBytes)
			if path := os.Getenv("SCRIBEFS_CPUPROFILE"); path != "" {
				stop, err := cpuProfile(path)
				if err != nil {
					return err
				}
				defer stop()
			}
			mnt, err := filepath.Abs(c.Args().Get(0))
			if err != nil {
				return err
			}
			if c.Bool("daemon") {
				return daemonize(c, cfg, mnt)
			}
			ro := c.Bool("read-only")
			ctx, cancel := context.WithCancel(c.Context)
			defer cancel()

			var m *metrics.Metrics
			reg := prometheus.NewRegistry()
			if addr := c.String("metrics-addr"); addr != "" {
				m = metrics.New(reg)
				ln, err := serveMetrics(addr, reg, log)
				if err != nil {
					return err
				}
				defer ln.Close()
				log.Info("serving metrics", "op", "metrics", "url", "http://"+ln.Addr().String()+"/metrics")
			}
			a, err := assemble(ctx, cfg, ro, true, log, m)
			if err != nil {
				return err
			}
			defer a.Close()
			if m != nil {
				reg.MustRegister(newStoreCollector(a.store, cfg.Storage.Hot.MaxBytes))
			}
			if !ro {
				if n, err := a.store.CleanSpool(); err != nil {
					return err
				} else if n > 0 {
					log.Info("removed spool files of writes never closed before a crash", "op", "mount", "count", n)
				}
			}
			if a.s3 != nil && !ro {
				go func() {
					if n, err := a.s3.AbortIncompleteUploads(ctx, time.Now()); err != nil {
						log.Warn("could not clean up incomplete uploads", "op", "abort-uploads", "err", err)
					} else if n > 0 {
						log.Info("aborted incomplete uploads left by a crash", "op", "abort-uploads", "count", n)
					}
				}()
			}
			lease := &leaseState{}
			if a.s3 != nil && !ro {
				release, err := holdLease(ctx, a, cfg.Storage.Hot.Path, c.Bool("take-over"), log, lease)
				if err != nil {
					return err
				}
				defer release()
			}
			describe := func(st *control.Status) {
				lease.describe(st)
				st.RecentErrors = ring.Lines()
				st.MetricsAddr = c.String("metrics-addr")
			}
			ctl, err := control.Serve(control.SocketPath(cfg.Storage.Hot.Path), a.api(mnt, describe), log)
			if err != nil {
				return err
			}
			defer ctl.Close()

			go a.store.Run(ctx)
			if a.s3 != nil {
				// Give the first listing of the bucket a moment, so a fresh
				// host's first ls is complete; a huge bucket goes on
				// filling the index in the background.
				select {
				case <-a.store.Synced():
				case <-time.After(10 * time.Second):
					log.Info("still listing the bucket; segments appear as they are indexed", "op", "reconcile")
				}
			}
			var store fs.Store = fsStore{a.store}
			if m != nil {
				store = observedStore{fsStore{a.store}, m}
			}
			srv, err := fs.Mount(mnt, store, fs.Options{
				ReadOnly:   ro,
				AllowOther: c.Bool("allow-other"),
				Debug:      c.Bool("debug-fuse"),
				Logger:     log,
			})
			if err != nil {
				return err
			}
			log.Info("mounted", "op", "mount", "mountpoint", mnt, "config", cfg.Source, "read_only", ro, "pid", os.Getpid())
			ready.report(nil)

			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			go func() {
				sig, ok := <-sigs
				if !ok {
					return
				}
				log.Info("unmounting", "op", "unmount", "signal", sig.String(), "grace", c.Duration("grace"))
				if err := srv.Shutdown(c.Duration("grace")); err != nil {
					log.Error("unmount failed", "op", "unmount", "mountpoint", mnt, "err", err)
					fmt.Fprintf(c.App.ErrWriter, "scribefs: unmount %s: %v\n", mnt, err)
				}
			}()
			srv.Wait()
			log.Info("unmounted", "op", "unmount", "mountpoint", mnt)
			return nil
		},
	}
}

// leaseState is the writer lease as status reports it.
type leaseState struct {
	// mu guards the fields below.
	mu      sync.Mutex
	holder  string
	renewed time.Time
	ttl     time.Duration
	lost    string
}

func (l *leaseState) set(holder string, ttl time.Duration) {
	l.mu.Lock()
	l.holder, l.ttl, l.renewed = holder, ttl, time.Now()
	l.mu.Unlock()
}

func (l *leaseState) renewedNow() {
	l.mu.Lock()
	l.renewed = time.Now()
	l.mu.Unlock()
}

func (l *leaseState) lose(err error) {
	l.mu.Lock()
	l.lost = oneLine(err)
	l.mu.Unlock()
}

func (l *leaseState) describe(st *control.Status) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.holder == "":
		return
	case l.lost != "":
		st.Lease = "lost: " + l.lost
	default:
		st.Lease = "held"
		st.LeaseExpires = l.renewed.Add(l.ttl).UTC()
	}
	st.LeaseHolder = l.holder
}

// holdLease takes the bucket's writer lease for this mount and keeps
// renewing it; if another writer takes it over, the store stops writing to
// S3 (hot-tier writes go on, nothing is lost). A live holder elsewhere
// refuses the mount. When S3 cannot be reached at start, the mount comes up
// anyway with cold writes fenced, and the lease is sought in the background
// until it is held: hot reads and writes need no S3.
func holdLease(ctx context.Context, a *assembled, hotPath string, takeOver bool, log *slog.Logger, state *leaseState) (release func(), err error) {
	host, _ := os.Hostname()
	abs, _ := filepath.Abs(hotPath)
	holder := host + ":" + abs
	opts := s3.LeaseOptions{Holder: holder, PID: os.Getpid(), TakeOver: takeOver}
	var held atomic.Pointer[s3.Lease]
	release = func() {
		if l := held.Load(); l != nil {
			l.Release(context.Background())
		}
	}
	lease, err := a.s3.AcquireLease(ctx, opts)
	if err != nil && !backend.IsTransient(err) {
		return nil, err
	}
	if err != nil {
		log.Warn("S3 unreachable: mounting without the writer lease; no archival or cold deletes until it is held", "op", "lease", "err", err)
		a.store.Fence(fmt.Errorf("writer lease not yet held: %w", err))
	}
	go func() {
		for lease == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
			l, err := a.s3.AcquireLease(ctx, opts)
			switch {
			case err == nil:
				lease = l
				a.store.Unfence()
				log.Info("writer lease acquired", "op", "lease", "holder", holder)
			case !backend.IsTransient(err):
				log.Error("writer lease held elsewhere: this mount stays without archival and cold deletes", "op", "lease", "err", err)
				a.store.Fence(err)
				return
			}
		}
		held.Store(lease)
		state.set(holder, lease.TTL())
		renewLease(ctx, a, lease, log, state)
	}()
	return release, nil
}

// renewLease renews until ctx ends or the lease is taken over.
func renewLease(ctx context.Context, a *assembled, lease *s3.Lease, log *slog.Logger, state *leaseState) {
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
			log.Error("writer lease lost: no more archival or cold deletes from this mount", "op", "lease", "err", err)
			state.lose(err)
			a.store.Fence(err)
			return
		}
		if err != nil {
			log.Warn("could not renew the writer lease; retrying", "op", "lease", "err", err)
			continue
		}
		state.renewedNow()
	}
}

// limitMemory sets the Go runtime's soft memory limit to the cache budget
// plus headroom for requests in flight, unless GOMEMLIMIT is set: with the
// default GOGC the heap may grow to twice what is live, so a full cache plus
// prefetch buffers could otherwise overshoot [cache] max_bytes + 100 MiB.
func limitMemory(cacheBytes int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(cacheBytes + 80<<20)
}

// cpuProfile writes a CPU profile of the mount to path until stop is
// called (SCRIBEFS_CPUPROFILE, for finding what bounds a benchmark).
func cpuProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("SCRIBEFS_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("SCRIBEFS_CPUPROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
