package fs

import (
	"math"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/scribefs/scribefs/segment"
)

// Inode numbers.
//
// The kernel, and tools such as find, du, tar and rsync, identify a file by
// (st_dev, st_ino), so a segment keeps the same number across remounts: its
// number is computed from its id, never handed out in order of discovery.
//
//	0                  never used (invalid)
//	1                  the root directory (go-fuse's FUSE_ROOT_ID)
//	2                  the segments directory
//	id + 3             segment id, for id < foldStart (= 2^64 - 2^32 - 4)
//	tempBase...        temporary dot-files: 2^31 numbers from a counter
//	autoBase...        go-fuse's automatic numbers (FirstAutomaticIno); unused,
//	                   since every node here is given an explicit number
//	2^64 - 1           reserved by go-fuse
//
// That is one-to-one for every id below foldStart: all but the top 2^32+4
// of the 2^64 ids. Those top ids cannot all get a number of their own (the
// reserved numbers and the temp window leave too few), so they fold onto
// segmentIno(id - foldStart + 2^63): an id in the top sliver shares its
// number with an id about 2^63 below it. Both can only exist together when
// ids are spread over the whole uint64 range; even then nothing breaks,
// because go-fuse tells nodes apart by (Ino, Gen) and folded ids carry
// genFolded, and tools only treat equal numbers as hard links when st_nlink
// is above 1, which it never is here.
//
// Temporary files are not stored, so their numbers need not be stable; they
// come from a counter that wraps within its window, skipping numbers of
// temporary files that still exist.
const (
	rootIno     = 1
	segmentsIno = 2
	inoOffset   = 3

	tempWindow = 1 << 31
	autoWindow = 1 << 31
	autoBase   = math.MaxUint64 - autoWindow // first automatic number
	tempBase   = autoBase - tempWindow       // first temp file number

	// foldStart is the first id whose id+3 would reach the temp window.
	foldStart = tempBase - inoOffset
	// foldTarget is where the folded ids land: segmentIno(2^63) onwards.
	foldTarget = 1<<63 + inoOffset

	// genFolded marks the generation of folded ids, so that go-fuse, which
	// deduplicates nodes by (Ino, Gen), keeps them apart from the ids whose
	// number they share. Displacement generations (see segmentsDir) count
	// up from 1 and never reach this bit.
	genFolded = 1 << 63
)

// segmentIno returns the inode number of a segment and whether the id is one
// of the few folded ones that share their number with another id.
func segmentIno(id segment.ID) (ino uint64, folded bool) {
	if uint64(id) < foldStart {
		return uint64(id) + inoOffset, false
	}
	return foldTarget + (uint64(id) - foldStart), true
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

// tempIno maps the n-th temp file (counting from 0, wrapping) to its number.
func tempIno(n uint64) uint64 { return tempBase + n%tempWindow }
