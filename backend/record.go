package backend

import "github.com/scribefs/scribefs/segment"

// Record is the state of one segment across the tiers of a tiered store,
// as a hot tier that indexes the cold one keeps it (backend/local does):
// its hot version, its indexed cold object, a pending cold delete, and the
// change number of its last transition. The tiered store (package tier)
// documents the states and transitions; a hot tier only stores them, each
// transition in one transaction.
type Record struct {
	ID segment.ID
	// Change is the change number of the record's last transition, from one
	// counter that never goes back; 0 when none was recorded (no record, or
	// one written before change numbers existed).
	Change uint64
	// Hot is the current hot version (with its checksums), nil when none.
	Hot *segment.Info
	// Cold is the indexed cold object (with its checksums), nil when none.
	Cold *segment.Info
	// Tomb is a pending cold delete: the version to delete ("" for any),
	// nil when none.
	Tomb *string
	// Uploading is set while an upload of this segment may have reached
	// the bucket without being recorded in Cold (set before the upload,
	// cleared by the transition that records its outcome): a crash or a
	// lost reply then leaves an object the index does not know, and a
	// delete must delete whatever the bucket holds.
	Uploading bool

	// Touch, set by a transition, gives the record a new change number even
	// when nothing else changed (a delete of a segment the index did not
	// know must still be a change to a pass that began before it). It is
	// not stored.
	Touch bool
}

// Live reports whether readers see the segment (a hot or cold version).
func (r Record) Live() bool { return r.Hot != nil || r.Cold != nil }

// Empty reports whether nothing at all is recorded.
func (r Record) Empty() bool { return !r.Live() && r.Tomb == nil && !r.Uploading }
