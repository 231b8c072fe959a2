package fs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// spoolPrefix starts the name of every spool file (see draft): the spool
// directory may be shared with anything (spool_dir = "/var/tmp"), so this
// name is how scribefs tells its own files from others'.
const spoolPrefix = ".scribefs-spool-"

// createSpool creates a spool file in dir and unlinks it at once: it
// disappears with its last descriptor, even if the process is killed. Only
// a crash between the two steps leaves one behind, for CleanSpool.
func createSpool(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, spoolPrefix+"*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

// isSpoolName reports whether name is one createSpool makes: the prefix and
// the decimal digits os.CreateTemp puts in place of the "*".
func isSpoolName(name string) bool {
	rest, ok := strings.CutPrefix(name, spoolPrefix)
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// CleanSpool removes the spool files that a process killed while creating
// one left in dir, and nothing else: other files in the directory are not
// scribefs's. Call it before mounting a writable store (a spool file left
// by a crash held writes that were never acknowledged, so nothing is lost)
// and never while a mount uses dir. It reports how many it removed.
func CleanSpool(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if e.Type().IsRegular() && isSpoolName(e.Name()) && os.Remove(filepath.Join(dir, e.Name())) == nil {
			n++
		}
	}
	return n, nil
}
