package control

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/cache"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
	"log/slog"
)

// mustStore is a tiered store whose cold tier is a second bbolt file, which
// the test can change behind the store's back.
func mustStore(t *testing.T) (*tier.Store, *local.Backend) {
	t.Helper()
	dir := t.TempDir()
	hot, err := local.Open(filepath.Join(dir, "hot.db"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cold, err := local.Open(filepath.Join(dir, "cold.db"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hot.Close(); cold.Close() })
	s, err := tier.New(hot, hot.Index(), cold, cache.New(1<<20), tier.Config{ArchiveAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s, cold
}

func TestVerify(t *testing.T) {
	s, cold := mustStore(t)
	ctx := context.Background()
	for id := segment.ID(1); id <= 4; id++ {
		data := bytes.Repeat([]byte{byte(id)}, int(id)*700_000)
		if _, err := s.Put(ctx, id, bytes.NewReader(data), int64(len(data)), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []segment.ID{1, 2, 3} {
		if err := s.Archive(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	l := &Local{Store: s}
	var calls int
	rep, err := l.Verify(ctx, VerifyOptions{}, func(done, total int, _ int64) { calls++ })
	if err != nil || len(rep.Problems) != 0 || rep.HotChecked != 1 || rep.ColdChecked != 3 || calls != 5 {
		t.Fatalf("sound store: %+v, %v, %d progress calls", rep, err, calls)
	}

	// Behind the store's back: one object deleted, one replaced by bytes
	// of the same length that no longer match, one added.
	if err := cold.Delete(ctx, 2, ""); err != nil {
		t.Fatal(err)
	}
	info, _, _ := s.IndexEntry(3)
	bad := bytes.Repeat([]byte{9}, int(info.Size))
	if _, err := cold.Put(ctx, 3, bytes.NewReader(bad), backend.PutOptions{Size: info.Size}); err != nil {
		t.Fatal(err)
	}
	if _, err := cold.Put(ctx, 50, strings.NewReader("stray"), backend.PutOptions{Size: 5}); err != nil {
		t.Fatal(err)
	}
	rep, err = l.Verify(ctx, VerifyOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range rep.Problems {
		got = append(got, p.ID.String()+":"+p.Kind)
	}
	if strings.Join(got, " ") != "2:missing 3:drift 50:orphan" {
		t.Fatalf("problems: %v", rep.Problems)
	}

	rep, err = l.Verify(ctx, VerifyOptions{Repair: true}, nil)
	if err != nil || !rep.Repaired {
		t.Fatalf("repair: %+v %v", rep, err)
	}
	// The index now follows the bucket: 3's new bytes carry no sums of
	// their own, so only its checksum-less read remains; 2 is gone, 50 seen.
	rep, err = l.Verify(ctx, VerifyOptions{}, nil)
	if err != nil || len(rep.Problems) != 0 || rep.ColdChecked != 3 {
		t.Fatalf("after repair: %+v %v", rep, err)
	}
	if _, err := s.Stat(ctx, 50); err != nil {
		t.Fatalf("orphan not indexed by repair: %v", err)
	}
}

// TestVerifyOverSocket: verify streams progress and its report through the
// control socket, and status carries the backlog.
func TestVerifyOverSocket(t *testing.T) {
	s, _ := mustStore(t)
	ctx := context.Background()
	s.Put(ctx, 7, strings.NewReader("seven"), 5, time.Time{})
	sock := filepath.Join(t.TempDir(), "s.sock")
	srv, err := Serve(sock, &Local{Store: s}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var last int
	rep, err := c.Verify(ctx, VerifyOptions{Parallel: 2}, func(done, total int, _ int64) { last = done })
	if err != nil || rep.HotChecked != 1 || len(rep.Problems) != 0 || last != 1 {
		t.Fatalf("verify over the socket: %+v %v (last progress %d)", rep, err, last)
	}
	st, err := c.Status(ctx)
	if err != nil || st.HotCount != 1 || st.BacklogSegments != 0 {
		t.Fatalf("status: %+v %v", st, err)
	}
}
