package fs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

func TestSegmentIno(t *testing.T) {
	reserved := map[uint64]string{0: "invalid", rootIno: "root", segmentsIno: "segments", math.MaxUint64: "go-fuse"}
	// Unique at the edges, folded ids included (they share only with the
	// four ids just below the temp window, checked below).
	edges := []segment.ID{0, 1, 2, 3, 1<<63 - 1, 1 << 63, 1<<63 + 1, 1<<64 - 1<<32 - 4, maxPlain - 1, maxPlain, maxPlain + 1, math.MaxUint64}
	seen := make(map[uint64]segment.ID)
	for _, id := range edges {
		ino, folded := segmentIno(id)
		if what, ok := reserved[ino]; ok {
			t.Errorf("id %d: ino %d is reserved (%s)", id, ino, what)
		}
		if other, dup := seen[ino]; dup {
			t.Errorf("ids %d and %d share ino %d", id, other, ino)
		}
		seen[ino] = id
		if folded != (uint64(id) > maxPlain) {
			t.Errorf("id %d: folded=%v", id, folded)
		}
		if ino2, _ := segmentIno(id); ino2 != ino {
			t.Errorf("id %d: not deterministic", id)
		}
	}
	for _, tc := range []struct {
		id  segment.ID
		ino uint64
	}{
		{0, 3}, {1, 4}, {1<<63 - 1, 1<<63 + 2}, {1 << 63, 1<<63 + 3}, {1<<64 - 1<<32 - 4, 1<<64 - 1<<32 - 1},
		{maxPlain, math.MaxUint64 - 1}, {maxPlain + 1, tempBase}, {math.MaxUint64, tempBase + 3},
	} {
		if ino, _ := segmentIno(tc.id); ino != tc.ino {
			t.Errorf("segmentIno(%d) = %d, want %d", tc.id, ino, tc.ino)
		}
	}
	// A folded id shares its number with an unfolded one, but never its
	// go-fuse identity.
	a, b := segmentStableAttr(tempBase-inoOffset, 0), segmentStableAttr(maxPlain+1, 0)
	if a.Ino != b.Ino || a == b {
		t.Errorf("folded identities: %+v %+v", a, b)
	}
	if a, b := segmentStableAttr(5, 0), segmentStableAttr(5, 1); a == b {
		t.Errorf("displacement generation ignored")
	}
	// Temp numbers stay in their window, past the folded ids, and their
	// identities differ from a segment's with the same number.
	for _, n := range []uint64{0, 1, tempWindow - 1, tempWindow, math.MaxUint64} {
		ino := tempIno(n)
		if ino < tempBase+foldCount || ino >= math.MaxUint64 {
			t.Errorf("tempIno(%d) = %d outside [%d, %d)", n, ino, uint64(tempBase+foldCount), uint64(math.MaxUint64))
		}
		if tempStableAttr(ino) == segmentStableAttr(segment.ID(ino-inoOffset), 0) {
			t.Errorf("temp %d and segment %d have one identity", ino, ino-inoOffset)
		}
	}
}

func TestToErrno(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{fmt.Errorf("stat 5: %w", backend.ErrNotFound), syscall.ENOENT},
		{backend.ErrTooLarge, syscall.EFBIG},
		{fmt.Errorf("put: %w", backend.ErrNoSpace), syscall.ENOSPC},
		{backend.ErrReadOnly, syscall.EROFS},
		{backend.ErrPermission, syscall.EACCES},
		{backend.ErrInvalid, syscall.EINVAL},
		{fmt.Errorf("%w %q", segment.ErrInvalidID, "x"), syscall.EINVAL},
		{backend.ErrStale, syscall.ESTALE},
		{backend.ErrUnavailable, syscall.EIO},
		{fmt.Errorf("block 3: %w", segment.ErrChecksum), syscall.EIO},
		{context.DeadlineExceeded, syscall.EIO},
		{fmt.Errorf("get: %w", context.Canceled), syscall.EINTR},
		{fmt.Errorf("spool: %w", syscall.ENOSPC), syscall.ENOSPC},
		{fmt.Errorf("spool: %w", syscall.EDQUOT), syscall.EDQUOT},
		{errors.New("something else"), syscall.EIO},
		{errDraftClosed, syscall.EIO},
	} {
		if got := toErrno(tc.err); got != tc.want {
			t.Errorf("toErrno(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind nameKind
		id   segment.ID
	}{
		{"0", segmentName, 0},
		{"42", segmentName, 42},
		{"18446744073709551615", segmentName, math.MaxUint64},
		{"18446744073709551616", badName, 0},
		{"007", badName, 0},
		{"-1", badName, 0},
		{"abc", badName, 0},
		{"", badName, 0},
		{".", badName, 0},
		{"..", badName, 0},
		{".5.XXXXXX", tempName, 0},
		{".swp", tempName, 0},
	} {
		kind, id := classify(tc.name)
		if kind != tc.kind || id != tc.id {
			t.Errorf("classify(%q) = %v %d, want %v %d", tc.name, kind, id, tc.kind, tc.id)
		}
	}
}

// TestImports keeps the layers apart: the file system sees storage only
// through Store, never the AWS SDK or bbolt.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/aws/") || strings.HasPrefix(pkg, "go.etcd.io/bbolt") {
			t.Errorf("fs depends on %s", pkg)
		}
	}
}
