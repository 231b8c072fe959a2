package local

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Compact rewrites the hot-tier file at path without its free pages, so the
// file shrinks after segments have left it (bbolt reuses freed pages but
// never returns them to the file system). It needs the file to itself: it
// takes bbolt's lock, so it fails with ErrLocked while a mount uses it. The
// new file is written beside the old one, fsynced, and renamed over it, so
// a crash leaves one or the other, never a mix. It returns the sizes before
// and after.
func Compact(path string, lockTimeout time.Duration) (before, after int64, err error) {
	if lockTimeout == 0 {
		lockTimeout = time.Second
	}
	src, err := Open(path, Options{LockTimeout: lockTimeout})
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	if err := src.WaitGCAll(); err != nil {
		return 0, 0, fmt.Errorf("hot tier %s: freeing garbage before compacting: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".compact")
	os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return 0, 0, fmt.Errorf("hot tier %s: compacting: %w", path, err)
	}
	if err := bolt.Compact(dst, src.db, 64<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return 0, 0, fmt.Errorf("hot tier %s: compacting: %w", path, err)
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		os.Remove(tmp)
		return 0, 0, err
	}
	dst.Close()
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return 0, 0, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	nst, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	return st.Size(), nst.Size(), nil
}

// WaitGCAll frees every garbage generation (nothing is pinned in a process
// that only compacts).
func (b *Backend) WaitGCAll() error {
	for {
		more, err := b.gcOnce()
		if err != nil || !more {
			return err
		}
	}
}
