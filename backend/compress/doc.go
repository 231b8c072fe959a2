// Package compress is a backend.Backend wrapper that stores segments
// compressed, in independently decodable 1 MiB blocks with an index, so a
// ranged read still fetches only the blocks it covers. Readers see the
// original bytes and size; Stat adds StoredSize and Compression.
//
// It sits around the raw cold-tier backend, under retry (see
// cmd/scribefs/assemble.go): a retried Get or Put re-runs the whole
// compressed operation, footer probe included, and the metrics under it
// count every request the wrapper makes.
//
// # Object format
//
// An object is a sequence of frames, one per segment.BlockSize block of the
// original bytes (the last may be short), then a trailer holding the index
// and a fixed-size footer. Everything is little-endian.
//
//	frames  | zstd: one zstd frame per block
//	        | gzip: ONE gzip member: a 10-byte header, then per block
//	        |       the deflate of the block alone ended by a full flush
//	        |       (no reference reaches before the block, and the frame
//	        |       ends byte-aligned), then an empty final stored block
//	        |       (01 00 00 ff ff), CRC32 and ISIZE of all the bytes;
//	        |       frame i starts at 10 + the lengths before it. Objects
//	        |       of format version 1 (one member per block, frames from
//	        |       offset 0) stay readable.
//	trailer | zstd: one skippable frame (magic 0x184D2A5E) whose payload is
//	        |       index ‖ footer, so the footer is the last 52 bytes
//	        | gzip: empty gzip members whose FEXTRA field (subfield "SF")
//	        |       carries the index in chunks of at most 65000 bytes, then
//	        |       one empty member carrying only the footer; each ends in
//	        |       the 10 bytes 03 00 and eight zero bytes (an empty final
//	        |       deflate block, CRC32 0, ISIZE 0), so the footer ends 10
//	        |       bytes before the end of the object
//
//	index   per block: u32 compressed frame length, u32 CRC32C of the
//	        original bytes of the block; frame offsets are the running sum
//	        from 0
//	footer  8 magic "SFZBLK01", u8 format version (1; 2 for gzip's one
//	        member), u8 codec (1 zstd,
//	        2 gzip), u16 zero, u32 block size, u64 original size, u32
//	        CRC32C of all the original bytes, u32 block count, u64 offset of
//	        the index (its first chunk member, for gzip), u32 index length
//	        (payload bytes), u32 CRC32C of the index payload, u32 CRC32C of
//	        the footer's first 48 bytes
//
// So a whole zstd object is a valid zstd stream (`zstd -d` decodes it; the
// skippable frame is ignored) and a whole gzip object is a valid multi-member
// gzip stream (`gunzip` decodes it without a warning: the trailer members are
// empty) whose first member holds the whole segment: a decoder that reads
// one member and stops (Scribe Ledger nodes' flate2 GzDecoder) gets all of
// it and never looks at the index, which rides in the members after it. The format describes itself: any host reads it without a local
// index.
//
// # Costs
//
// The wrapper cannot add metadata through the Backend interface, so it
// recognises its objects by their footer: Stat of an object that carries no
// upstream (Scribe Ledger) compression does one extra ranged GET of the last
// 8 KiB (the footer and, for segments up to about 1 GiB, the index with
// it). The parsed index is kept per (segment, version) in a bounded LRU, and
// the tier keeps Stat results per version, so that is once per version. A
// Get that does not name a version pays a Stat (HEAD) to learn it.
//
// List reports stored sizes, which for a compressed object are not the
// segment's, so every listed entry the cache cannot resolve is marked
// Unresolved, whatever the Mode: a host that does not compress must still
// see the true size of objects a compressing host wrote (and objects
// written compressed earlier stay readable after the setting changes). The
// tier resolves each such entry once per version with Stat, which also
// gives it the entry's checksums (or tells it there are none). For a plain
// bucket that is one HEAD and one footer probe per object version, once,
// in the background.
//
// Put in Mode None stores plain bytes; Get and Stat always understand the
// format. Upstream whole-stream gzip objects (Compression "gzip", from
// backend/s3) pass through untouched.
//
// This package must not know about S3, bbolt or the tier: it sees only the
// inner Backend.
package compress
