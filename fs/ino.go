package fs

import (
	"math"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/scribefs/scribefs/segment"
)

// Inode numbers.
//
// The kernel, and tools such as find, du, cp, tar and rsync, identify a file
// by (st_dev, st_ino), so a segment keeps the same number across remounts:
// its number is computed from its id, never handed out in order of
// discovery.
//
//	0                  never used (invalid; readdir skips such entries)
//	1                  the root directory (go-fuse's FUSE_ROOT_ID)
//	2                  the segments directory
//	id + 3             segment id, for id <= maxPlain (= 2^64 - 5)
//	tempBase...        temporary dot-files: the top 2^31 numbers below
//	                   2^64 - 1, from a counter
//	2^64 - 1           reserved by go-fuse
//
// 2^64 ids and the four numbers the kernel and go-fuse reserve or use for
// the directories do not fit in 2^64 numbers, so a few ids must share. Every
// id up to maxPlain has a number of its own among segments; the four ids
// above it (2^64-4 … 2^64-1) fold onto foldTarget… and share it with the
// four ids just below the temp window. Temporary files (never stored, so
// their numbers need not be stable) take numbers from the top 2^31, which
// belong to ids 2^64-2^31-4 … 2^64-5: a temp file and such a segment can
// share a number while both exist. So two segments share a number only if
// both are among the top 2^31+4 ids, and then only those exact pairs.
// go-fuse tells nodes apart by (Ino, Gen): folded ids carry genFolded and
// temp files genTemp, so they never become one node with the id whose
// number they share.
const (
	rootIno     = 1
	segmentsIno = 2
	inoOffset   = 3

	// maxPlain is the largest id whose number is id+3.
	maxPlain = math.MaxUint64 - 1 - inoOffset // id+3 = 2^64-2

	tempWindow = 1 << 31
	tempBase   = math.MaxUint64 - tempWindow // first temp file number; the last is 2^64-2
	// autoBase is go-fuse's first automatic number. Every node here gets
	// an explicit number, so none is ever handed out; it is set anyway so
	// that one would not collide with the low numbers.
	autoBase = tempBase

	// foldTarget is where the four folded ids land: the first numbers of
	// the temp window, which temp files skip.
	foldTarget = tempBase
	foldCount  = math.MaxUint64 - maxPlain // 4

	// genFolded and genTemp mark the generation of folded ids and of temp
	// files, so that go-fuse, which deduplicates nodes by (Ino, Gen),
	// keeps them apart from the ids whose number they share.
	// Displacement generations (see segmentsDir) count up from 1 and never
	// reach these bits.
	genFolded = 1 << 63
	genTemp   = 1 << 62
)

// segmentIno returns the inode number of a segment and whether the id is one
// of the four folded ones that share their number with another id.
func segmentIno(id segment.ID) (ino uint64, folded bool) {
	if uint64(id) <= maxPlain {
		return uint64(id) + inoOffset, false
	}
	return foldTarget + (uint64(id) - maxPlain - 1), true
}

// segmentStableAttr is the go-fuse identity of the node for segment id when
// gen is the displacement generation of that id (0 normally).
func segmentStableAttr(id segment.ID, gen uint64) gofs.StableAttr {
	ino, folded := segmentIno(id)
	if folded {
		gen |= genFolded
	}
	return gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino, Gen: gen}
}

// tempIno maps the n-th temp file (counting from 0, wrapping) to its number,
// past the numbers of the folded ids.
func tempIno(n uint64) uint64 { return tempBase + foldCount + n%(tempWindow-foldCount) }

// tempStableAttr is the go-fuse identity of a temp file's node.
func tempStableAttr(ino uint64) gofs.StableAttr {
	return gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino, Gen: genTemp}
}
