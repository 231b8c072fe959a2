// Package tiertest is the conformance suite for what the tiered store needs
// of a hot tier beyond backend.Backend: tier.Hot and tier.Index, the
// records and their transitions. backend/local and backend/mem both run it
// (from tier's tests, so that backend/ never imports the tier); the
// Backend half of their contract is backend/backendtest's.
package tiertest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

// HotFactory returns a new, empty hot tier and its index. The suite closes
// the hot tier.
type HotFactory func(t *testing.T) (tier.Hot, tier.Index)

var ctx = context.Background()

// RunHot runs every hot-tier conformance test against tiers made by
// newHot.
func RunHot(t *testing.T, newHot HotFactory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h tier.Hot, x tier.Index)
	}{
		{"ChangeNumbers", testChangeNumbers},
		{"PutIf", testPutIf},
		{"PinSurvivesOverwriteAndDelete", testPins},
		{"UpdateMovesAndDrops", testUpdateMoves},
		{"UpdateColdAndTombstone", testUpdateCold},
		{"UpdateAborts", testUpdateAborts},
		{"UpdateRefusesForeignVersion", testUpdateForeign},
		{"DeletedMarker", testDeletedMarker},
		{"IndexListAndAfter", testIndexList},
		{"TouchAndUploading", testTouchAndUploading},
		{"LiveListsEachSegmentOnce", testLive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, x := newHot(t)
			t.Cleanup(func() { h.Close() })
			tc.fn(t, h, x)
		})
	}
}

func mustRecord(t *testing.T, x tier.Index, id segment.ID) backend.Record {
	t.Helper()
	r, err := x.Record(id)
	if err != nil {
		t.Fatalf("record %d: %v", id, err)
	}
	return r
}

func mustRead(t *testing.T, h backend.Backend, id segment.ID) []byte {
	t.Helper()
	r, err := h.Get(ctx, id, backend.Whole)
	if err != nil {
		t.Fatalf("get %d: %v", id, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %d: %v", id, err)
	}
	return b
}

func testChangeNumbers(t *testing.T, h tier.Hot, x tier.Index) {
	if r := mustRecord(t, x, 1); r.Change != 0 || !r.Empty() {
		t.Fatalf("new id: record %+v, want empty with change 0", r)
	}
	last := uint64(0)
	step := func(what string, fn func()) {
		t.Helper()
		fn()
		r := mustRecord(t, x, 1)
		if r.Change <= last {
			t.Fatalf("%s: change %d, not above the previous %d", what, r.Change, last)
		}
		if c, _ := x.Counter(); c < r.Change {
			t.Fatalf("%s: counter %d below the record's change %d", what, c, r.Change)
		}
		last = r.Change
	}
	step("put", func() { backendtest.MustPut(t, h, 1, []byte("a")) })
	step("overwrite", func() { backendtest.MustPut(t, h, 1, []byte("b")) })
	step("rename away and back", func() {
		if err := h.Rename(ctx, 1, 2); err != nil {
			t.Fatal(err)
		}
		if err := h.Rename(ctx, 2, 1); err != nil {
			t.Fatal(err)
		}
	})
	step("set cold", func() {
		if _, err := x.Update([]segment.ID{1}, func(rs []*backend.Record) error {
			rs[0].Cold = &segment.Info{ID: 1, Size: 1, Version: "etag", Tier: segment.TierCold, ModTime: time.Unix(1, 0).UTC()}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
	before := mustRecord(t, x, 1).Change
	if _, err := x.Update([]segment.ID{1}, func(rs []*backend.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if r := mustRecord(t, x, 1); r.Change != before {
		t.Fatalf("an update that changed nothing moved the change number %d to %d", before, r.Change)
	}
	step("delete", func() {
		if err := h.Delete(ctx, 1, ""); err != nil {
			t.Fatal(err)
		}
	})
}

func testPutIf(t *testing.T, h tier.Hot, x tier.Index) {
	backendtest.MustPut(t, h, 1, []byte("old"))
	before := mustRecord(t, x, 1)
	refuse := errors.New("refused")
	_, err := h.PutIf(ctx, 1, bytes.NewReader([]byte("new")), backend.PutOptions{Size: 3}, func(r backend.Record) error {
		if r.Change != before.Change || r.Hot == nil || r.Hot.Version != before.Hot.Version {
			t.Errorf("check saw %+v, want the current record %+v", r, before)
		}
		return refuse
	})
	if !errors.Is(err, refuse) {
		t.Fatalf("refused PutIf: %v, want the check's error", err)
	}
	if got := mustRead(t, h, 1); string(got) != "old" {
		t.Fatalf("after a refused PutIf: %q", got)
	}
	if r := mustRecord(t, x, 1); r.Change != before.Change {
		t.Fatalf("a refused PutIf changed the record: %d to %d", before.Change, r.Change)
	}
	if _, err := h.PutIf(ctx, 1, bytes.NewReader([]byte("new")), backend.PutOptions{Size: 3}, func(backend.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, h, 1); string(got) != "new" {
		t.Fatalf("after an accepted PutIf: %q", got)
	}
}

func testPins(t *testing.T, h tier.Hot, x tier.Index) {
	old := backendtest.RandomBytes(1, 3*segment.BlockSize+5)
	backendtest.MustPut(t, h, 1, old)
	info, release, err := h.PinCurrent(1)
	if err != nil {
		t.Fatal(err)
	}
	backendtest.MustPut(t, h, 1, []byte("new"))
	if err := h.Delete(ctx, 1, ""); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(old))
	if n, err := h.ReadAt(info.Version, got, 0); n != len(old) || (err != nil && err != io.EOF) {
		t.Fatalf("pinned read after overwrite and delete: %d, %v", n, err)
	}
	if !bytes.Equal(got, old) {
		t.Fatal("pinned read differs from the pinned version")
	}
	r, err := h.Get(ctx, 1, backend.GetOptions{Version: info.Version, Length: -1})
	if err != nil {
		t.Fatalf("get of the pinned version: %v", err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(b, old) {
		t.Fatal("get of the pinned version differs")
	}
	release()
	if _, err := h.ReadAt(info.Version, got, 0); !errors.Is(err, backend.ErrStale) {
		t.Fatalf("read of a released, deleted version: %v, want ErrStale", err)
	}
}

func testUpdateMoves(t *testing.T, h tier.Hot, x tier.Index) {
	backendtest.MustPut(t, h, 1, []byte("one"))
	backendtest.MustPut(t, h, 2, []byte("two!"))
	if _, err := x.Update([]segment.ID{1, 2}, func(rs []*backend.Record) error {
		rs[1].Hot, rs[0].Hot = rs[0].Hot, nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, h, 2); string(got) != "one" {
		t.Fatalf("moved: 2 reads %q", got)
	}
	if _, err := h.Stat(ctx, 1); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("moved away: stat 1 = %v", err)
	}
	if u := h.Usage(); u != 3 {
		t.Fatalf("usage %d after the move, want 3", u)
	}
	if _, err := x.Update([]segment.ID{2}, func(rs []*backend.Record) error {
		rs[0].Hot.ModTime = time.Unix(1000, 0).UTC()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if st, _ := h.Stat(ctx, 2); !st.ModTime.Equal(time.Unix(1000, 0)) {
		t.Fatalf("mtime %v after update", st.ModTime)
	}
	if _, err := x.Update([]segment.ID{2}, func(rs []*backend.Record) error { rs[0].Hot = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Stat(ctx, 2); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("dropped: stat 2 = %v", err)
	}
	if u := h.Usage(); u != 0 {
		t.Fatalf("usage %d after the drop", u)
	}
}

func testUpdateCold(t *testing.T, h tier.Hot, x tier.Index) {
	sums := segment.Sum([]byte("cold bytes"))
	cold := segment.Info{ID: 5, Size: 10, Version: "v1", Tier: segment.TierCold, Sums: sums, ModTime: time.Unix(7, 0).UTC()}
	if _, err := x.Update([]segment.ID{5}, func(rs []*backend.Record) error { rs[0].Cold = &cold; return nil }); err != nil {
		t.Fatal(err)
	}
	r := mustRecord(t, x, 5)
	if r.Cold == nil || r.Cold.Version != "v1" || !r.Cold.Sums.Equal(sums) || r.Hot != nil || r.Tomb != nil {
		t.Fatalf("record %+v", r)
	}
	tomb := "v1"
	if _, err := x.Update([]segment.ID{5}, func(rs []*backend.Record) error { rs[0].Cold, rs[0].Tomb = nil, &tomb; return nil }); err != nil {
		t.Fatal(err)
	}
	if ts, _ := x.Tombstones(); ts[5] != "v1" || len(ts) != 1 {
		t.Fatalf("tombstones %v", ts)
	}
	if r := mustRecord(t, x, 5); r.Live() || r.Tomb == nil {
		t.Fatalf("record %+v, want a tombstone only", r)
	}
}

func testUpdateAborts(t *testing.T, h tier.Hot, x tier.Index) {
	backendtest.MustPut(t, h, 1, []byte("one"))
	before := mustRecord(t, x, 1)
	stop := errors.New("stop")
	_, err := x.Update([]segment.ID{1}, func(rs []*backend.Record) error {
		rs[0].Hot = nil
		rs[0].Cold = &segment.Info{ID: 1, Version: "x"}
		return stop
	})
	if !errors.Is(err, stop) {
		t.Fatalf("aborted update: %v", err)
	}
	if r := mustRecord(t, x, 1); r.Change != before.Change || r.Hot == nil || r.Cold != nil {
		t.Fatalf("an aborted update changed the record: %+v", r)
	}
}

func testUpdateForeign(t *testing.T, h tier.Hot, x tier.Index) {
	backendtest.MustPut(t, h, 1, []byte("one"))
	_, err := x.Update([]segment.ID{1}, func(rs []*backend.Record) error {
		rs[0].Hot = &segment.Info{ID: 1, Version: "999999", Size: 3}
		return nil
	})
	if !errors.Is(err, backend.ErrInvalid) {
		t.Fatalf("a hot version from nowhere: %v, want ErrInvalid", err)
	}
	if got := mustRead(t, h, 1); string(got) != "one" {
		t.Fatalf("after a refused update: %q", got)
	}
}

func testDeletedMarker(t *testing.T, h tier.Hot, x tier.Index) {
	backendtest.MustPut(t, h, 1, []byte("one"))
	if err := h.Delete(ctx, 1, ""); err != nil {
		t.Fatal(err)
	}
	r := mustRecord(t, x, 1)
	if !r.Empty() || r.Change == 0 {
		t.Fatalf("deleted: record %+v, want empty with its change number", r)
	}
	if n, err := x.ForgetDeleted(r.Change - 1); err != nil || n != 0 {
		t.Fatalf("forget before the delete: %d, %v", n, err)
	}
	if mustRecord(t, x, 1).Change != r.Change {
		t.Fatal("a marker changed after its delete was forgotten too early")
	}
	if n, err := x.ForgetDeleted(r.Change); err != nil || n != 1 {
		t.Fatalf("forget up to the delete: %d, %v", n, err)
	}
	if got := mustRecord(t, x, 1); got.Change != 0 {
		t.Fatalf("forgotten marker still has change %d", got.Change)
	}
}

func testIndexList(t *testing.T, h tier.Hot, x tier.Index) {
	for _, id := range []segment.ID{9, 3, 6} {
		c := segment.Info{ID: id, Size: int64(id), Version: "v", Tier: segment.TierCold, Sums: segment.Sum(make([]byte, id))}
		if _, err := x.Update([]segment.ID{id}, func(rs []*backend.Record) error { rs[0].Cold = &c; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var got []segment.ID
	if err := x.List(func(i segment.Info) error {
		if i.Sums != nil {
			t.Errorf("listed entry %d carries checksums", i.ID)
		}
		got = append(got, i.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != 3 || got[1] != 6 || got[2] != 9 {
		t.Fatalf("index list %v", got)
	}
	after, err := x.After(3, 1)
	if err != nil || len(after) != 1 || after[0].ID != 6 || after[0].Sums == nil {
		t.Fatalf("after 3: %+v, %v", after, err)
	}
}

func testTouchAndUploading(t *testing.T, h tier.Hot, x tier.Index) {
	// A transition of a record with nothing in it still advances it when
	// touched, and leaves a deleted marker.
	recs, err := x.Update([]segment.ID{4}, func(rs []*backend.Record) error { rs[0].Touch = true; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if recs[0].Change == 0 || !recs[0].Empty() {
		t.Fatalf("touched empty record: %+v", recs[0])
	}
	backendtest.MustPut(t, h, 1, []byte("one"))
	before := mustRecord(t, x, 1)
	if _, err := x.Update([]segment.ID{1}, func(rs []*backend.Record) error { rs[0].Uploading = true; return nil }); err != nil {
		t.Fatal(err)
	}
	r := mustRecord(t, x, 1)
	if !r.Uploading || r.Change <= before.Change {
		t.Fatalf("uploading: %+v", r)
	}
	if err := h.Delete(ctx, 1, ""); err != nil {
		t.Fatal(err)
	}
	if r := mustRecord(t, x, 1); !r.Uploading || r.Empty() {
		t.Fatalf("the uploading flag outlives the hot version: %+v", r)
	}
	if _, err := x.Update([]segment.ID{1}, func(rs []*backend.Record) error { rs[0].Uploading = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if r := mustRecord(t, x, 1); r.Uploading || !r.Empty() {
		t.Fatalf("cleared: %+v", r)
	}
}

func testLive(t *testing.T, h tier.Hot, x tier.Index) {
	// 2500 segments, half hot, half cold, one in both: listed once each,
	// hot preferred, ascending, across batches.
	for id := segment.ID(1); id <= 2500; id++ {
		if id%2 == 0 || id == 7 {
			backendtest.MustPut(t, h, id, []byte{byte(id)})
		}
		if id%2 == 1 {
			c := segment.Info{ID: id, Size: 1, Version: "c", Tier: segment.TierCold}
			if _, err := x.Update([]segment.ID{id}, func(rs []*backend.Record) error { rs[0].Cold = &c; return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	var last segment.ID
	n := 0
	if err := x.Live(ctx, func(i segment.Info) error {
		if i.ID <= last {
			t.Fatalf("%d listed after %d", i.ID, last)
		}
		last = i.ID
		n++
		want := segment.TierCold
		if i.ID%2 == 0 || i.ID == 7 {
			want = segment.TierHot
		}
		if i.Tier != want {
			t.Fatalf("segment %d listed from tier %v, want %v", i.ID, i.Tier, want)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 2500 {
		t.Fatalf("listed %d segments, want 2500", n)
	}
}
