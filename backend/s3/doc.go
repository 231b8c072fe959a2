// Package s3 is the cold tier: a backend.Backend on an S3 bucket (AWS S3,
// MinIO or another S3-compatible store), built on aws-sdk-go-v2.
//
// # Layout
//
// Segment id is stored as the object <Prefix>segment-<id.Hex()>.bin, the key
// layout Scribe Ledger nodes use, so a bucket they fill can be mounted.
// Sixteen lowercase hex digits make the store's lexical key order the numeric
// id order, which is how List streams ascending ids page by page. Any other
// key under the prefix (Scribe Ledger's .meta.json sidecars, scribefs's
// .sums companions, strays) is ignored. Each object carries user metadata:
// scribefs-mtime (the settable mtime, unix nanoseconds), scribefs-written
// (unix nanoseconds), scribefs-crc32c (8 hex digits) and, while they fit
// the 2 KiB metadata limit (about 280 blocks), scribefs-blocks (base64 of
// the big-endian block CRC32Cs). Block sums that do not fit, or are not
// known when a multipart upload starts, go to a companion object
// <Prefix>segment-<id.Hex()>.<token>.sums, written before the object is
// committed and named by the object's scribefs-sums token, so that every
// object scribefs writes can be checked in ranges by any host, at any size
// (sums.go has the format). A successful Put or Delete removes the
// companions of other versions and a stale sidecar, after the object.
// Version is the ETag.
//
// # Scribe Ledger sidecars
//
// Nodes read a segment only through its segment-<hex>.meta.json sidecar
// (ledger.go reads them). Put summarizes the bytes as they stream
// (sidecar.go) and, after the .bin, writes the sidecar a node would for them
// (plain bytes, or the compress wrapper's gzip-blocks objects, whose frames
// are one gzip member: PutOptions.Compression says which) or removes an old
// one when they are no segment a node reads; Delete removes the .bin, then
// the sidecar. MerkleRoot reads a sidecar's merkle_root for verify.
//
// # Integrity
//
// Every PutObject and UploadPart carries the CRC32C of its body, which the
// store verifies on receipt, and the CRC32C the store reports back is
// compared with ours. Multipart uploads use a full-object CRC32C, so the
// store also checks the assembled object. Whole-object reads are checked at
// EOF against the recorded CRC32C (the reader reports it, WholeCRC32C, so
// the retry wrapper can check a whole read it resumed in ranges); ranged
// reads are checked by the caller against the block sums Stat returns
// (from metadata or the companion, read once per version). Objects other
// programs wrote may carry no checksum at all: Stat then reports nil Sums.
// An upstream gzip object is checked by gzip's CRC on a whole read only;
// the tier learns block sums for its ranges from one whole read.
//
// # What it does not do
//
// It does not retry: the SDK client is built with no retryer of its own, and
// backend/retry wraps this backend, so a retry count means one thing. It does
// not log (Health returns one-line messages for the caller to print), read
// the environment beyond what the AWS SDK's own credential chain reads, or
// abort stale multipart uploads unless asked to (AbortIncompleteUploads).
// Errors leave through one conversion (errors.go) as backend sentinels; SDK
// error types never escape, and messages never contain the secret key.
//
// # Timeouts
//
// Config.Timeout is an idle timeout enforced by a watchdog on every HTTP
// request, including the streaming of a GET body to the caller: a request is
// cancelled only when no bytes have moved for that long, so slow but steady
// multi-gigabyte transfers complete. Callers bound total time with their
// context.
package s3
