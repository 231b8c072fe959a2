package mount

// Adversarial review of the control socket's delete in a running mount:
// through the file system while mounted, through the store once the mount
// has ended (the ErrUnmounted fallback), and never a false success.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/cache"
	"github.com/scribefs/scribefs/fs"
	"github.com/scribefs/scribefs/internal/control"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

type reviewFS struct{ *tier.Store }

func (s reviewFS) Open(ctx context.Context, id segment.ID) (fs.Reader, error) {
	r, err := s.Store.Open(ctx, id)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func TestReviewSocketDeleteAcrossUnmount(t *testing.T) {
	if os.Getuid() != 0 {
		if _, err := os.Stat("/dev/fuse"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("FUSE unavailable in CI: %v", err)
			}
			t.Skip("no FUSE")
		}
	}
	dir := t.TempDir()
	hotPath := filepath.Join(dir, "hot.db")
	hot, err := local.Open(hotPath, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer hot.Close()
	store, err := tier.New(hot, hot.Index(), nil, cache.New(1<<20), tier.Config{ArchiveAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []segment.ID{1, 2} {
		if _, err := store.Put(ctx, id, bytes.NewReader([]byte("data")), 4, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := Start(ctx, Options{
		Mountpoint: mnt, Store: store, FS: reviewFS{store}, HotPath: hotPath, Log: log,
		API: func(func(*control.Status)) control.API { return &control.Local{Store: store} },
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			m.Shutdown(time.Second)
			m.Close()
		}
	}()
	c, err := control.Dial(control.SocketPath(hotPath))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Mounted: through the file system.
	if err := c.Delete(ctx, 1); err != nil {
		t.Fatalf("socket rm while mounted: %v", err)
	}
	if _, err := store.Stat(ctx, 1); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("segment 1 after rm: %v", err)
	}
	if err := c.Delete(ctx, 1); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("socket rm of a missing segment while mounted: %v", err)
	}
	// Unmounted, the socket still served: through the store.
	if err := m.Shutdown(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	m.Wait()
	if err := c.Delete(ctx, 2); err != nil {
		t.Fatalf("socket rm after unmount: %v", err)
	}
	if _, err := store.Stat(ctx, 2); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("segment 2 after rm after unmount: %v", err)
	}
	if err := c.Delete(ctx, 2); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("socket rm of a missing segment after unmount: %v", err)
	}
	m.Close()
	closed = true
	if _, err := os.Lstat(control.SocketPath(hotPath)); !os.IsNotExist(err) {
		t.Fatalf("socket left after Close: %v", err)
	}
	if e, _ := filepath.Glob(filepath.Join(dir, ".scribefs-sock-*")); len(e) != 0 {
		t.Fatalf("temp socket directories left: %v", e)
	}
}
