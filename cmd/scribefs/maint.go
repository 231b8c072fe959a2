package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/scribefs/scribefs/internal/control"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

// errProblems makes a command exit 1 after it has said what was wrong.
var errProblems = errors.New("problems found")

func parallelFlag() cli.Flag {
	return &cli.IntFlag{Name: "parallel", Aliases: []string{"j"}, Value: 4, Usage: fmt.Sprintf("segments handled at once (1-%d)", tier.MaxVerifyParallel)}
}

func parallelOf(c *cli.Context) (int, error) {
	n := c.Int("parallel")
	if n < 1 || n > tier.MaxVerifyParallel {
		return 0, usagef("--parallel %d: want 1 to %d", n, tier.MaxVerifyParallel)
	}
	return n, nil
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check every segment's checksums in each tier and the index against the bucket",
		Description: `Reads every hot segment and every cold object back (cold ones straight from
S3, not the cache) and checks them against the block checksums recorded when
they were written. Compares the index of the cold tier with a listing of the
bucket and reports:

  checksum     stored bytes differ from what was written
  missing      the index lists a cold segment whose object is gone from S3
  orphan       S3 holds a segment object the index does not know (invisible)
  drift        the index and S3 disagree on a segment's version
  unreadable   reading failed for another reason
  merkle       a segment's bytes lack the Merkle root its Scribe Ledger
               sidecar records (checked for every sidecar with a merkle_root)

--repair then reconciles the index with the bucket (orphans become visible,
missing entries are dropped); damaged bytes cannot be repaired and stay
reported. Exit status 0 when all is well, 1 when a problem was found (also
when it was repaired: run again to confirm).`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "repair", Usage: "reconcile the index with the bucket after checking"},
			parallelFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("verify takes no arguments")
			}
			par, err := parallelOf(c)
			if err != nil {
				return err
			}
			return withAPI(c, func(api control.API) error {
				pr := newProgress(c.App.ErrWriter, "verified", 0)
				total := -1
				rep, err := api.Verify(c.Context, control.VerifyOptions{Repair: c.Bool("repair"), Parallel: par}, func(done, t int, bytes int64) {
					if t != total {
						total = t
						pr.SetTotal(t)
					}
					pr.Set(done, bytes)
				})
				pr.Finish()
				if err != nil {
					return err
				}
				w := c.App.Writer
				fmt.Fprintf(w, "checked %d hot and %d cold segments, %s\n", rep.HotChecked, rep.ColdChecked, humanBytes(rep.Bytes))
				for _, p := range rep.Problems {
					fmt.Fprintf(w, "problem: %s\n", p)
				}
				switch {
				case len(rep.Problems) == 0:
					fmt.Fprintln(w, "ok: no problems found")
					return nil
				case rep.Repaired:
					fmt.Fprintf(w, "%d problems; index reconciled with the bucket (checksum problems remain)\n", len(rep.Problems))
				default:
					fmt.Fprintf(w, "%d problems; 'scribefs verify --repair' reconciles the index with the bucket\n", len(rep.Problems))
				}
				return errProblems
			})
		},
	}
}

// idFile is one segment file of an import.
type idFile struct {
	id   segment.ID
	path string
	size int64
}

func importCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "store every file DIR/<id> as segment <id>, in parallel, keeping mtimes",
		ArgsUsage: "DIR",
		Description: `Each regular file in DIR named by a decimal segment id (DIR/42) becomes that
segment, replacing any stored version, with the file's mtime. Other names are
reported and skipped, and make the command exit 1 at the end; subdirectories
are not entered. Segments land in the hot tier and are archived by policy.`,
		Flags: []cli.Flag{parallelFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("import takes one DIR")
			}
			par, err := parallelOf(c)
			if err != nil {
				return err
			}
			dir := c.Args().Get(0)
			entries, err := os.ReadDir(dir)
			if err != nil {
				return err
			}
			var files []idFile
			skipped := 0
			for _, e := range entries {
				path := filepath.Join(dir, e.Name())
				id, perr := segment.ParseID(e.Name())
				if perr != nil {
					fmt.Fprintf(c.App.ErrWriter, "scribefs: import: skipping %s: not a decimal segment id\n", path)
					skipped++
					continue
				}
				st, err := os.Stat(path)
				if err != nil || !st.Mode().IsRegular() {
					fmt.Fprintf(c.App.ErrWriter, "scribefs: import: skipping %s: not a regular file\n", path)
					skipped++
					continue
				}
				files = append(files, idFile{id, path, st.Size()})
			}
			sort.Slice(files, func(a, b int) bool { return files[a].id < files[b].id })
			return withStore(c, writesColdIfThrough, func(api control.API) error {
				pr := newProgress(c.App.ErrWriter, "imported", len(files))
				failed := parallelEach(c, par, len(files), func(i int) error {
					f := files[i]
					err := importOne(c, api, f)
					if err == nil {
						pr.Add(f.size)
					}
					return err
				})
				pr.Finish()
				if failed > 0 || skipped > 0 {
					return fmt.Errorf("import: %d files failed, %d skipped", failed, skipped)
				}
				return nil
			})
		},
	}
}

func importOne(c *cli.Context, api control.API, f idFile) error {
	file, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return err
	}
	if _, err := api.Put(c.Context, f.id, file, st.Size(), st.ModTime()); err != nil {
		return segErr(f.id, err)
	}
	return nil
}

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write every segment (or the IDs given) to DIR/<id>, in parallel, keeping mtimes",
		ArgsUsage: "DIR [ID...]",
		Description: `Writes each segment to DIR/<id> (DIR is created if missing) through a
temporary file renamed into place, so a file of that name is always whole,
and sets its mtime to the segment's. Existing files are replaced. Cold
segments are read from S3 without filling the mount's cache much beyond
what the read-ahead takes.`,
		Flags: []cli.Flag{parallelFlag()},
		Action: func(c *cli.Context) error {
			if c.NArg() < 1 {
				return usagef("export takes DIR [ID...]")
			}
			par, err := parallelOf(c)
			if err != nil {
				return err
			}
			dir := c.Args().Get(0)
			var want []segment.ID
			for _, a := range c.Args().Slice()[1:] {
				id, err := parseID(a)
				if err != nil {
					return err
				}
				want = append(want, id)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			return withAPI(c, func(api control.API) error {
				var infos []segment.Info
				if len(want) == 0 {
					if err := api.List(c.Context, func(i segment.Info) error { infos = append(infos, i); return nil }); err != nil {
						return err
					}
				} else {
					for _, id := range want {
						i, err := api.Stat(c.Context, id)
						if err != nil {
							return segErr(id, err)
						}
						infos = append(infos, i)
					}
				}
				pr := newProgress(c.App.ErrWriter, "exported", len(infos))
				failed := parallelEach(c, par, len(infos), func(i int) error {
					n, err := exportOne(c, api, dir, infos[i])
					if err == nil {
						pr.Add(n)
					}
					return err
				})
				pr.Finish()
				if failed > 0 {
					return fmt.Errorf("export: %d segments failed", failed)
				}
				return nil
			})
		},
	}
}

func exportOne(c *cli.Context, api control.API, dir string, info segment.Info) (int64, error) {
	name := filepath.Join(dir, info.ID.String())
	tmp, err := os.CreateTemp(dir, "."+info.ID.String()+".*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	cw := &countWriter{w: tmp}
	got, err := control.Get(c.Context, api, info.ID, cw)
	if err != nil {
		tmp.Close()
		return 0, segErr(info.ID, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	// The mtime of the version read: Get pinned one version, which a
	// concurrent overwrite may have replaced since the listing.
	if err := os.Chtimes(tmp.Name(), time.Time{}, got.ModTime); err != nil {
		return 0, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return 0, err
	}
	return cw.n, os.Rename(tmp.Name(), name)
}

type countWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// parallelEach runs fn(0..n-1) on par workers, printing each failure as
// one line, and returns how many failed. It stops handing out work when
// the command is interrupted.
func parallelEach(c *cli.Context, par, n int, fn func(i int) error) int {
	var (
		next   atomic.Int64
		failed atomic.Int64
		mu     sync.Mutex
		wg     sync.WaitGroup
	)
	for range min(par, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.Context.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					failed.Add(1)
					mu.Lock()
					fmt.Fprintf(c.App.ErrWriter, "scribefs: %s\n", oneLine(err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return int(failed.Load())
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash; zsh through bashcompinit)",
		ArgsUsage: "bash|zsh",
		Description: `Load it in the current shell:
  source <(scribefs completion bash)
or install it for everyone:
  scribefs completion bash > /usr/share/bash-completion/completions/scribefs`,
		Action: func(c *cli.Context) error {
			shell := c.Args().First()
			switch shell {
			case "bash", "":
				_, err := fmt.Fprint(c.App.Writer, bashCompletion)
				return err
			case "zsh":
				_, err := fmt.Fprint(c.App.Writer, "autoload -U +X bashcompinit && bashcompinit\n"+bashCompletion)
				return err
			}
			return usagef("completion %q: want bash or zsh", shell)
		},
	}
}

// bashCompletion asks the binary itself for candidates (urfave/cli's
// --generate-bash-completion), so it never goes out of date; paths are
// completed by the shell where a command takes them.
var bashCompletion = strings.TrimLeft(`
_scribefs_complete() {
    local cur words
    cur="${COMP_WORDS[COMP_CWORD]}"
    if [[ "$cur" == -* ]]; then
        words=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:$COMP_CWORD-1}" "$cur" --generate-bash-completion 2>/dev/null)
    else
        words=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:$COMP_CWORD-1}" --generate-bash-completion 2>/dev/null)
    fi
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    if [[ ${#COMPREPLY[@]} -eq 0 ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}
complete -o filenames -F _scribefs_complete scribefs
`, "\n")
