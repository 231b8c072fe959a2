// Package tier is the segment store that the filesystem and the command line
// use: a hot tier (the bbolt file), an optional cold tier (any
// backend.Backend, in practice S3 behind the retry wrapper), an index of the
// cold tier kept in the bbolt file, and a byte-bounded read-through cache of
// cold blocks.
//
// Reads look in the hot tier, then the cold tier through the cache; writes go
// to the hot tier; deletes reach every tier; listings are the union. The
// archiver moves segments hot to cold (Archive, and the policy loop in Run).
//
// tier never sees S3 or FUSE types: it composes backend.Backend values that
// are assembled elsewhere (cmd/scribefs).
package tier
