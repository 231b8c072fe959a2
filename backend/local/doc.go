// Package local is the hot tier: segments stored in one bbolt file.
//
// Layout (all keys big-endian, so cursors walk ids in ascending order):
//
//	meta/<id>          -> generation, size, mtime, write time of the current version
//	sums/<gen>         -> the version's block checksums
//	chunks/<gen><idx>  -> BlockSize bytes of the version (the last may be short)
//	pending/<gen>      -> a version being written (chunks exist, meta does not point at it)
//	garbage/<gen>      -> a version no meta points at; its chunks are deleted in the background
//	cold/<id>          -> the Index: what this store knows of the cold tier
//	coldsums/<id>      -> block checksums of indexed cold segments
//	tombstones/<id>    -> cold deletes not yet carried out
//
// Chunks are keyed by generation, not id, so a large segment is written over
// several transactions (each commit holds at most batchBytes of dirty pages)
// and made visible by one last transaction that points meta at the new
// generation. A crash before that leaves a pending generation, which Open
// turns into garbage. Overwrites, deletes and renames are single small
// transactions; freeing the old chunks happens later, in batches, and never
// while a reader has the generation pinned.
//
// bbolt's byte slices are valid only inside their transaction: everything
// handed out of this package is copied.
package local
