// Package segment holds the vocabulary every layer of scribefs shares: a
// segment's ID, its Info (size, modification time, tier, checksums) and the
// block checksum scheme used to verify streamed reads.
//
// It has no dependencies on storage or FUSE types and must not grow any: the
// backends, the tiered store and the filesystem all import it.
package segment
