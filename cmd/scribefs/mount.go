package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/scribefs/scribefs/backend/metrics"
	"github.com/scribefs/scribefs/fs"
	"github.com/scribefs/scribefs/internal/control"
	"github.com/scribefs/scribefs/internal/mount"
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
			&cli.BoolFlag{Name: "take-over", Usage: "take the bucket's writer lease even from a live holder (that mount stops writing to S3; this one starts a lease TTL, 2m, later)"},
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
			var store fs.Store = fsStore{a.store}
			if m != nil {
				store = observedStore{fsStore{a.store}, m}
			}
			// Catch SIGINT/SIGTERM before the file system appears: one
			// arriving while the mount starts must unmount it cleanly, not
			// kill the process and leave a dead mount point behind.
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			mt, err := mount.Start(ctx, mount.Options{
				Mountpoint: mnt,
				Store:      a.store,
				FS:         store,
				S3:         a.s3,
				HotPath:    cfg.Storage.Hot.Path,
				API: func(describe func(*control.Status)) control.API {
					return a.api(mnt, describe)
				},
				Describe: func(st *control.Status) {
					st.RecentErrors = ring.Lines()
					st.MetricsAddr = c.String("metrics-addr")
				},
				AllowOther:       c.Bool("allow-other"),
				DebugFUSE:        c.Bool("debug-fuse"),
				TakeOver:         c.Bool("take-over"),
				AssumeSoleWriter: cfg.Storage.S3 != nil && cfg.Storage.S3.AssumeSoleWriter,
				Log:              log,
			})
			if err != nil {
				return err
			}
			defer mt.Close()
			log.Info("serving", "op", "mount", "mountpoint", mnt, "config", cfg.Source)
			ready.report(nil)

			go func() {
				sig, ok := <-sigs
				if !ok {
					return
				}
				log.Info("unmounting", "op", "unmount", "signal", sig.String(), "grace", c.Duration("grace"))
				if err := mt.Shutdown(c.Duration("grace")); err != nil {
					log.Error("unmount failed", "op", "unmount", "mountpoint", mnt, "err", err)
					fmt.Fprintf(c.App.ErrWriter, "scribefs: %v\n", err)
				}
			}()
			mt.Wait()
			log.Info("unmounted", "op", "unmount", "mountpoint", mnt)
			return nil
		},
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
