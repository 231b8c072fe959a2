package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/fs"
	"github.com/scribefs/scribefs/internal/control"
)

func mountCommand() *cli.Command {
	return &cli.Command{
		Name:      "mount",
		Usage:     "serve the store at MOUNTPOINT/segments/<id> until unmounted (SIGINT/SIGTERM unmount cleanly)",
		ArgsUsage: "MOUNTPOINT",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "read-only", Usage: "refuse every change (EROFS); the cold tier is never written"},
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users access the mount (needs user_allow_other in /etc/fuse.conf for non-root)"},
			&cli.DurationFlag{Name: "grace", Value: 30 * time.Second, Usage: "on SIGINT/SIGTERM, how long files open for writing may take to close; writes not closed by then are discarded"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
			&cli.BoolFlag{Name: "debug-fuse", Usage: "log every FUSE request"},
			&cli.BoolFlag{Name: "take-over", Usage: "take the bucket's writer lease even from a live holder (that mount stops writing to S3)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("mount takes one MOUNTPOINT")
			}
			format := c.String("log-format")
			if format != "text" && format != "json" {
				return usagef("--log-format %q: want text or json", format)
			}
			log, err := newLogger(c, c.App.ErrWriter, format)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			mnt := c.Args().Get(0)
			ro := c.Bool("read-only")
			ctx, cancel := context.WithCancel(c.Context)
			defer cancel()

			a, err := assemble(ctx, cfg, ro, true, log)
			if err != nil {
				return err
			}
			defer a.Close()
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
			if a.s3 != nil && !ro {
				lease, err := acquireLease(ctx, a, cfg.Storage.Hot.Path, c.Bool("take-over"), log)
				if err != nil {
					return err
				}
				defer lease.Release(context.Background())
			}
			ctl, err := control.Serve(control.SocketPath(cfg.Storage.Hot.Path), a.api(mnt), log)
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
			srv, err := fs.Mount(mnt, fsStore{a.store}, fs.Options{
				ReadOnly:   ro,
				AllowOther: c.Bool("allow-other"),
				Debug:      c.Bool("debug-fuse"),
				Logger:     log,
			})
			if err != nil {
				return err
			}
			log.Info("mounted", "mountpoint", mnt, "config", cfg.Source, "read_only", ro)

			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			go func() {
				sig, ok := <-sigs
				if !ok {
					return
				}
				log.Info("unmounting", "signal", sig.String(), "grace", c.Duration("grace"))
				if err := srv.Shutdown(c.Duration("grace")); err != nil {
					log.Error("unmount failed", "err", err)
					fmt.Fprintf(c.App.ErrWriter, "scribefs: unmount %s: %v\n", mnt, err)
				}
			}()
			srv.Wait()
			log.Info("unmounted", "mountpoint", mnt)
			return nil
		},
	}
}

// acquireLease takes the bucket's writer lease for this mount and keeps
// renewing it; if another writer takes it over, the store stops writing to
// S3 (hot-tier writes go on, nothing is lost).
func acquireLease(ctx context.Context, a *assembled, hotPath string, takeOver bool, log *slog.Logger) (*s3.Lease, error) {
	host, _ := os.Hostname()
	abs, _ := filepath.Abs(hotPath)
	lease, err := a.s3.AcquireLease(ctx, s3.LeaseOptions{Holder: host + ":" + abs, PID: os.Getpid(), TakeOver: takeOver})
	if err != nil {
		return nil, err
	}
	go func() {
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
				a.store.Fence(err)
				return
			}
			if err != nil {
				log.Warn("could not renew the writer lease; retrying", "op", "lease", "err", err)
			}
		}
	}()
	return lease, nil
}
