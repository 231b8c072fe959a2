// Command scribefs serves a Scribe Ledger segment store as a filesystem and
// manages it from the command line. It is the only package that reads
// flags, the environment and configuration files.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/internal/config"
	"github.com/scribefs/scribefs/internal/control"
	"github.com/scribefs/scribefs/internal/mount"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/segment/ledger"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	err := app.Run(args)
	if err == nil {
		return 0
	}
	if errors.Is(err, errProblems) {
		return 1 // the command has said what they were
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "scribefs: %s (see 'scribefs --help')\n", ue.msg)
		return 2
	}
	fmt.Fprintf(stderr, "scribefs: %s\n", oneLine(err))
	return 1
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "scribefs",
		Usage:                "Scribe Ledger segments as a filesystem: a bbolt hot tier, an S3 cold tier, a read-through cache",
		UsageText:            "scribefs [--config FILE] [--log-level L] [--log-format F] COMMAND [flags] [args]",
		Description:          appDescription,
		Version:              version,
		EnableBashCompletion: true,
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "configuration `FILE` (default: $SCRIBEFS_CONFIG, ~/.config/scribefs/config.toml, /etc/scribefs/config.toml, else the embedded default)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log level: debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format on standard error: text or json"},
		},
		HideHelpCommand: true,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err.Error()}
		},
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(stderr, "scribefs: unknown command %q (see 'scribefs --help')\n", name)
			os.Exit(2)
		},
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			putCommand(), getCommand(), lsCommand(), rmCommand(), statCommand(),
			archiveCommand(), healthCommand(), statusCommand(), verifyCommand(), importCommand(), exportCommand(),
			dumpCommand(), compactCommand(), mountCommand(), completionCommand(),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintf(c.App.Writer, "scribefs %s\n", version)
					return nil
				},
			},
		},
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = app.OnUsageError
	}
	return app
}

// loadConfig reads the configuration named by --config or found at the
// default places, and prints its warnings.
func loadConfig(c *cli.Context) (*config.Config, error) {
	cfg, err := config.Load(c.String("config"), os.Getenv)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(c.App.ErrWriter, "scribefs: warning: %s\n", w)
	}
	return cfg, nil
}

// openAPI reaches the store: through the running mount's control socket
// when there is one, else by opening it in this process. A store opened
// here never changes the bucket without holding its writer lease: for a
// command that changes the bucket (use) it takes the lease for the
// command's duration, or fails naming the holder; otherwise the cold tier
// is fenced.
func openAPI(c *cli.Context, use coldUse) (control.API, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, err
	}
	if client, err := control.Dial(control.SocketPath(cfg.Storage.Hot.Path)); err == nil {
		return client, nil
	}
	log, err := newCommandLogger(c, c.App.ErrWriter)
	if err != nil {
		return nil, err
	}
	a, err := assemble(c.Context, cfg, false, false, log, nil)
	if err != nil {
		return nil, err
	}
	api := a.api("", nil)
	if a.s3 == nil {
		return api, nil
	}
	if use == readsCold || (use == writesColdIfThrough && cfg.Tiering.ArchiveAfter != 0) {
		a.store.Fence(errors.New("this command holds no writer lease"))
		return api, nil
	}
	k, err := mount.KeepLease(c.Context, mount.LeaseOptions{
		S3: a.s3, Fence: a.store, HotPath: cfg.Storage.Hot.Path, Wait: true,
		AssumeSoleWriter: cfg.Storage.S3.AssumeSoleWriter, Log: log,
		Watching: func(holder string, ttl time.Duration) {
			fmt.Fprintf(c.App.ErrWriter, "scribefs: the writer lease of %s looks expired; watching it for %v before taking it\n", holder, ttl)
		},
	})
	if err != nil {
		a.Close()
		if errors.Is(err, s3.ErrLeaseHeld) {
			err = fmt.Errorf("%w; run it where that mount runs, or once it is unmounted", err)
		}
		return nil, fmt.Errorf("%s needs the bucket's writer lease: %w", c.Command.Name, err)
	}
	api.OnClose = func() error {
		k.Release()
		return a.Close()
	}
	return api, nil
}

// withAPI runs fn with the store and closes it afterwards; the store does
// not change the bucket.
func withAPI(c *cli.Context, fn func(api control.API) error) error {
	return withStore(c, readsCold, fn)
}

// withStore runs fn with the store, holding the bucket's writer lease if
// use needs it and the store is opened in this process, and closes it
// afterwards.
func withStore(c *cli.Context, use coldUse, fn func(api control.API) error) error {
	api, err := openAPI(c, use)
	if err != nil {
		return err
	}
	defer api.Close()
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	c.Context = ctx
	return fn(api)
}

// coldUse says whether a command changes the bucket, and so needs its
// writer lease when it opens the store itself.
type coldUse int

const (
	readsCold           coldUse = iota // no lease: the cold tier is fenced
	writesCold                         // rm, archive
	writesColdIfThrough                // put, import: only with write-through
)

func parseID(s string) (segment.ID, error) {
	id, err := segment.ParseID(s)
	if err != nil {
		return 0, usagef("%v", err)
	}
	return id, nil
}

// segErr words an error for the user: "segment 123: not found". Errors of
// a known kind come from the store, which names the segment already;
// others (the socket, the file system) get it in front.
func segErr(id segment.ID, err error) error {
	switch backend.Kind(err) {
	case backend.KindNotFound:
		return fmt.Errorf("segment %d: not found", id)
	case backend.KindOther:
		return fmt.Errorf("segment %d: %w", id, err)
	}
	return err
}

func putCommand() *cli.Command {
	return &cli.Command{
		Name:      "put",
		Usage:     "store a segment from FILE or standard input",
		ArgsUsage: "ID [FILE|-]",
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 || c.NArg() > 2 {
				return usagef("put takes ID [FILE|-]")
			}
			id, err := parseID(c.Args().Get(0))
			if err != nil {
				return err
			}
			var r io.Reader = c.App.Reader
			size := int64(-1)
			if name := c.Args().Get(1); name != "" && name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				defer f.Close()
				st, err := f.Stat()
				if err != nil {
					return err
				}
				if !st.Mode().IsRegular() {
					return fmt.Errorf("%s: not a regular file", name)
				}
				r, size = f, st.Size()
			}
			return withStore(c, writesColdIfThrough, func(api control.API) error {
				_, err := api.Put(c.Context, id, r, size, time.Time{})
				if err != nil {
					return segErr(id, err)
				}
				return nil
			})
		},
	}
}

func getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "write a segment to FILE or standard output",
		ArgsUsage: "ID [FILE|-]",
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 || c.NArg() > 2 {
				return usagef("get takes ID [FILE|-]")
			}
			id, err := parseID(c.Args().Get(0))
			if err != nil {
				return err
			}
			return withAPI(c, func(api control.API) error {
				name := c.Args().Get(1)
				if name == "" || name == "-" {
					if _, err := control.Get(c.Context, api, id, c.App.Writer); err != nil {
						return segErr(id, err)
					}
					return nil
				}
				// Write beside the target and rename, so FILE is never half
				// written.
				tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
				if err != nil {
					return err
				}
				defer os.Remove(tmp.Name())
				// Get checks the length and CRC32C of what arrived.
				if _, err := control.Get(c.Context, api, id, tmp); err != nil {
					tmp.Close()
					return segErr(id, err)
				}
				if err := tmp.Sync(); err != nil {
					tmp.Close()
					return err
				}
				if err := tmp.Close(); err != nil {
					return err
				}
				return os.Rename(tmp.Name(), name)
			})
		},
	}
}

func lsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ls",
		Usage: "list segments, one decimal id per line, ascending (-l: ID SIZE MTIME TIER)",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "l", Usage: "long format: ID SIZE MTIME(RFC 3339) TIER"}},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("ls takes no arguments")
			}
			long := c.Bool("l")
			return withAPI(c, func(api control.API) error {
				// bufio's errors are sticky: a closed pipe stops the listing.
				w := bufio.NewWriterSize(c.App.Writer, 64<<10)
				err := api.List(c.Context, func(i segment.Info) error {
					var err error
					if long {
						_, err = fmt.Fprintf(w, "%d %d %s %s\n", i.ID, i.Size, i.ModTime.UTC().Format(time.RFC3339Nano), i.Tier)
					} else {
						_, err = fmt.Fprintf(w, "%d\n", i.ID)
					}
					return err
				})
				if ferr := w.Flush(); err == nil {
					err = ferr
				}
				return err
			})
		},
	}
}

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "delete segments from every tier",
		ArgsUsage: "ID...",
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usagef("rm takes at least one ID")
			}
			var ids []segment.ID
			for _, a := range c.Args().Slice() {
				id, err := parseID(a)
				if err != nil {
					return err
				}
				ids = append(ids, id)
			}
			return withStore(c, writesCold, func(api control.API) error {
				var failed error
				for _, id := range ids {
					if err := api.Delete(c.Context, id); err != nil {
						fmt.Fprintf(c.App.ErrWriter, "scribefs: %s\n", oneLine(segErr(id, err)))
						failed = errors.New("some segments were not removed")
					}
				}
				return failed
			})
		},
	}
}

func statCommand() *cli.Command {
	return &cli.Command{
		Name:      "stat",
		Usage:     "describe a segment as key: value lines",
		ArgsUsage: "ID",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("stat takes one ID")
			}
			id, err := parseID(c.Args().Get(0))
			if err != nil {
				return err
			}
			return withAPI(c, func(api control.API) error {
				i, err := api.Stat(c.Context, id)
				if err != nil {
					return segErr(id, err)
				}
				w := c.App.Writer
				fmt.Fprintf(w, "id: %d\nsize: %d\nmtime: %s\ntier: %s\nchecksum: %s\n",
					i.ID, i.Size, i.ModTime.UTC().Format(time.RFC3339Nano), i.Tier, i.Sums)
				if i.Compression != "" {
					fmt.Fprintf(w, "stored_size: %d\ncompression: %s\n", i.StoredSize, i.Compression)
				}
				fmt.Fprintf(w, "checked: %s\n", checkedText(i))
				if i.Tier == segment.TierCold {
					return statMerkle(c, api, i)
				}
				return nil
			})
		},
	}
}

// checkedText says whether reads of a segment are checked: "yes" when it
// carries checksums (or an encoding that checks itself, upstream gzip),
// "no" for an object another program wrote without any, whose bytes are
// served as S3 returns them.
func checkedText(i segment.Info) string {
	if i.Sums != nil || i.Compression != "" {
		return "yes"
	}
	return "no"
}

func archiveCommand() *cli.Command {
	return &cli.Command{
		Name:      "archive",
		Usage:     "move segments from the hot tier to the cold tier now",
		ArgsUsage: "ID...|--all",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "all", Usage: "archive every hot segment, in parallel, with progress"}, parallelFlag()},
		Action: func(c *cli.Context) error {
			if c.Bool("all") == (c.NArg() > 0) {
				return usagef("archive takes ID... or --all")
			}
			par, err := parallelOf(c)
			if err != nil {
				return err
			}
			var ids []segment.ID
			for _, a := range c.Args().Slice() {
				id, err := parseID(a)
				if err != nil {
					return err
				}
				ids = append(ids, id)
			}
			return withStore(c, writesCold, func(api control.API) error {
				if !c.Bool("all") {
					var failed error
					for _, id := range ids {
						if err := api.Archive(c.Context, id); err != nil {
							fmt.Fprintf(c.App.ErrWriter, "scribefs: %s\n", oneLine(segErr(id, err)))
							failed = errors.New("some segments were not archived")
							if c.Context.Err() != nil {
								return c.Context.Err()
							}
						}
					}
					return failed
				}
				hot, err := api.HotSegments(c.Context)
				if err != nil {
					return err
				}
				pr := newProgress(c.App.ErrWriter, "archived", len(hot))
				failed := parallelEach(c, par, len(hot), func(i int) error {
					if err := api.Archive(c.Context, hot[i].ID); err != nil {
						return segErr(hot[i].ID, err)
					}
					pr.Add(hot[i].Size)
					return nil
				})
				pr.Finish()
				if err := c.Context.Err(); err != nil {
					return err
				}
				if failed > 0 {
					return fmt.Errorf("%d segments were not archived", failed)
				}
				return nil
			})
		},
	}
}

func healthCommand() *cli.Command {
	return &cli.Command{
		Name:  "health",
		Usage: "check that the cold tier is reachable with the configured credentials and bucket (one attempt)",
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			return withAPI(c, func(api control.API) error {
				ctx, cancel := context.WithTimeout(c.Context, 15*time.Second)
				defer cancel()
				if err := api.Health(ctx); err != nil {
					return err
				}
				if sc := cfg.Storage.S3; sc != nil {
					fmt.Fprintf(c.App.Writer, "ok: bucket %s at %s is reachable\n", sc.Bucket, endpointOf(sc))
				} else {
					fmt.Fprintf(c.App.Writer, "ok: hot tier only (no [storage.s3] configured)\n")
				}
				return nil
			})
		},
	}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the store's tiers, cache, archive backlog, lease and recent errors (of the running mount, if any)",
		Description: `Prints key: value lines: aligned, with sizes in KiB/MiB/GiB, on a terminal;
one "key: value" a line, sizes in bytes and in human form, when piped; the
whole status as one JSON object with --json. With a mount running, the
figures are that process's (cache counters, lease, the last warnings and
errors it logged); without one, the store is opened here and only what is on
disk is shown.`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the status as one JSON object (for scripts)"}},
		Action: func(c *cli.Context) error {
			return withAPI(c, func(api control.API) error {
				st, err := api.Status(c.Context)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					enc := json.NewEncoder(c.App.Writer)
					enc.SetIndent("", "  ")
					return enc.Encode(st)
				}
				_, tty := terminalWidth(c.App.Writer)
				printStatus(c.App.Writer, st, tty)
				return nil
			})
		},
	}
}

func dumpCommand() *cli.Command {
	return &cli.Command{
		Name:      "dump",
		Usage:     "decode a segment in the Scribe Ledger encoding and print its id, timestamp and entries (escaped)",
		ArgsUsage: "ID",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("dump takes one ID")
			}
			id, err := parseID(c.Args().Get(0))
			if err != nil {
				return err
			}
			return withAPI(c, func(api control.API) error {
				obj, err := api.Open(c.Context, id)
				if err != nil {
					return segErr(id, err)
				}
				defer obj.Close()
				// Decoded as it arrives, entry by entry: a segment of
				// any size prints in bounded memory.
				if err := ledger.DumpStream(c.App.Writer, obj, obj.Info().Size); err != nil {
					if errors.Is(err, ledger.ErrFormat) {
						return fmt.Errorf("segment %d: %w", id, err)
					}
					return segErr(id, err)
				}
				return nil
			})
		},
	}
}

// printStatus writes status as key: value lines, one fact a line. For a
// person (human) the values are aligned and sizes human only; otherwise
// each line is "key: value" with sizes in bytes first, for scripts.
func printStatus(w io.Writer, st control.Status, human bool) {
	type line struct{ k, v string }
	var lines []line
	kv := func(k string, v any) { lines = append(lines, line{k, fmt.Sprint(v)}) }
	sizeOf := func(n, of int64) string {
		if human {
			return fmt.Sprintf("%s of %s", humanBytes(n), humanBytes(of))
		}
		return fmt.Sprintf("%d (%s of %s)", n, humanBytes(n), humanBytes(of))
	}
	mounted := "no"
	if st.Mounted {
		mounted = "yes, at " + st.Mountpoint
	}
	kv("mounted", mounted)
	kv("hot_tier", st.HotPath)
	kv("hot_bytes", sizeOf(st.HotBytes, st.HotMaxBytes))
	kv("hot_segments", st.HotCount)
	kv("cold_tier", st.ColdTier)
	kv("cache_bytes", sizeOf(st.CacheBytes, st.CacheMax))
	kv("cache_hits", st.CacheHits)
	kv("cache_misses", st.CacheMisses)
	kv("cache_evictions", st.CacheEvictions)
	if human {
		kv("cold_fetches", fmt.Sprintf("%d, %s", st.ColdFetches, humanBytes(st.ColdFetchBytes)))
	} else {
		kv("cold_fetches", fmt.Sprintf("%d (%s)", st.ColdFetches, humanBytes(st.ColdFetchBytes)))
	}
	kv("archive_backlog", fmt.Sprintf("%d segments, %s", st.BacklogSegments, humanBytes(st.BacklogBytes)))
	kv("archived", st.Archived)
	kv("archive_errors", st.ArchiveErrs)
	kv("checksum_errors", st.ChecksumErr)
	switch {
	case st.Lease == "":
		kv("lease", "none")
	case st.LeaseExpires.IsZero():
		kv("lease", fmt.Sprintf("%s (holder %s)", st.Lease, st.LeaseHolder))
	default:
		kv("lease", fmt.Sprintf("%s by %s, expires %s", st.Lease, st.LeaseHolder, st.LeaseExpires.Format(time.RFC3339)))
	}
	if st.MetricsAddr != "" {
		kv("metrics", "http://"+st.MetricsAddr+"/metrics")
	}
	if len(st.RecentErrors) == 0 {
		kv("recent_errors", "none")
	} else {
		kv("recent_errors", len(st.RecentErrors))
	}
	width := 0
	for _, l := range lines {
		width = max(width, len(l.k))
	}
	for _, l := range lines {
		if human {
			fmt.Fprintf(w, "%-*s  %s\n", width+1, l.k+":", l.v)
		} else {
			fmt.Fprintf(w, "%s: %s\n", l.k, l.v)
		}
	}
	for _, l := range st.RecentErrors {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

const appDescription = `scribefs serves a Scribe Ledger segment store as a Linux filesystem and
manages it from the command line. A segment is a blob named by a decimal
uint64 id; 'scribefs mount MNT' shows each as MNT/segments/<id>.

The store has a hot tier (one bbolt file, where new segments land), an
optional cold tier (an S3 bucket laid out as Scribe Ledger archives it:
<prefix>segment-<16 hex>.bin) and a read cache of cold data bounded in bytes.
Segments move hot to cold by policy ([tiering]) or with 'scribefs archive'.

Configuration (TOML) comes from --config FILE, else $SCRIBEFS_CONFIG, else
~/.config/scribefs/config.toml, else /etc/scribefs/config.toml, else the
built-in default (hot tier only, under ~/.local/share/scribefs). The keys:

  [storage]        max_segment_bytes
  [storage.hot]    path, max_bytes, spool_dir
  [storage.s3]     bucket, region, endpoint, access_key_id, secret_access_key,
                   path_style, pool_size, timeout_secs, max_retries, prefix,
                   refresh_secs, insecure_skip_verify   (absent: no cold tier)
  [cache]          max_bytes
  [tiering]        archive_after_secs (0 = write-through), check_interval_secs,
                   compression

Sizes may be integers or strings such as "256MiB". S3_BUCKET, S3_REGION,
S3_ENDPOINT, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY and S3_PATH_STYLE
override the file.

While a mount runs, every other command is served by it over a unix socket
beside the hot-tier file (mode 0600). Exit status: 0 success, 1 failure
(verify: a problem found), 2 usage error. 'scribefs COMMAND --help' describes
each command; 'scribefs completion bash' prints shell completion.`

// statMerkleMax is the largest segment whose Merkle root stat checks by
// reading it; verify checks any size.
const statMerkleMax = 64 << 20

// statMerkle prints the Merkle root a Scribe Ledger sidecar records for the
// cold segment i, if any, and whether the segment's bytes have it.
func statMerkle(c *cli.Context, api control.API, i segment.Info) error {
	cfg, err := loadConfig(c)
	if err != nil || cfg.Storage.S3 == nil {
		return err
	}
	b, err := s3.New(c.Context, s3Config(cfg.Storage.S3, true))
	if err != nil {
		return err
	}
	defer b.Close()
	w := c.App.Writer
	root, err := b.MerkleRoot(c.Context, i.ID)
	switch {
	case err != nil:
		fmt.Fprintf(w, "merkle_root: unreadable: %v\n", err)
		return nil
	case root == nil:
		return nil
	}
	fmt.Fprintf(w, "merkle_root: %x\n", root)
	if i.Size > statMerkleMax {
		fmt.Fprintf(w, "merkle_checked: no (over %s: scribefs verify checks it)\n", humanBytes(statMerkleMax))
		return nil
	}
	obj, err := api.Open(c.Context, i.ID)
	if err != nil {
		return segErr(i.ID, err)
	}
	defer obj.Close()
	sum, serr := ledger.Summarize(obj)
	if serr != nil && !errors.Is(serr, ledger.ErrFormat) {
		return segErr(i.ID, serr)
	}
	if obj.Info().Version != i.Version {
		fmt.Fprintln(w, "merkle_checked: no (the segment changed meanwhile)")
		return nil
	}
	if err := ledger.Mismatch(uint64(i.ID), root, sum, serr); err != nil {
		fmt.Fprintf(w, "merkle_checked: yes, MISMATCH: %v\n", err)
		return nil
	}
	fmt.Fprintln(w, "merkle_checked: yes, the bytes have this root")
	return nil
}
