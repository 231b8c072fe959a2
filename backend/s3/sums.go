package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/segment"
)

// Block sums that do not fit the object's user metadata (more than about
// 280 blocks) live in a companion object, written before the segment's
// object is committed:
//
//	<prefix>segment-<hex>.<token>.sums
//
// The segment's object names its companion by a random token in its
// metadata (scribefs-sums), so a companion always belongs to one object
// version: a Put that fails, or crashes, after writing its companion leaves
// the previous version and its companion untouched. (The reply to a commit
// may be lost after the store committed, so a failed Put's companion stays
// too, until the next Put or Delete of the segment removes it.) A companion
// holds, big-endian: the magic "SFSUMS01", the token (8 bytes), the
// segment's size (u64), its whole CRC32C (u32), the block count (u32), the
// block CRC32Cs (u32 each) and a CRC32C of everything before it (u32).
// Stat checks all of it against the object (token, size, whole CRC32C); a
// companion missing or damaged leaves Stat with the whole-object sum only,
// from which the tier learns block sums by one checked whole read.
// Listings ignore companions (they do not end in .bin). A successful Put
// or Delete removes the companions of other versions (and of crashed
// Puts) after the object itself was written or deleted.

const (
	metaSums    = "scribefs-sums" // token of the companion holding the block sums
	sumsMagic   = "SFSUMS01"
	sumsHdrLen  = 8 + 8 + 8 + 4 + 4
	tokenLen    = 8
	sumsSuffix  = ".sums"
	maxSumsBody = sumsHdrLen + 4*(maxObjectSize/segment.BlockSize+1) + 4
	// sumsCacheSize is how many companions (one per object version) are
	// kept in memory; a 1 GiB segment's is 4 KiB.
	sumsCacheSize = 128
)

// newToken returns a fresh companion token (16 hex digits).
func newToken() string {
	var b [tokenLen]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (b *Backend) sumsKey(id segment.ID, token string) string {
	return b.keyPrefix + id.Hex() + "." + token + sumsSuffix
}

// blocksFit reports whether the block sums fit the object's metadata.
func (b *Backend) blocksFit(sums *segment.Checksums) bool {
	return sums != nil && base64Len(4*len(sums.Blocks)) <= b.metaBlocksMax
}

func base64Len(n int) int { return (n + 2) / 3 * 4 }

// encodeSums is the companion's body.
func encodeSums(token string, size int64, sums *segment.Checksums) []byte {
	tok, _ := hex.DecodeString(token)
	buf := make([]byte, sumsHdrLen+4*len(sums.Blocks)+4)
	copy(buf, sumsMagic)
	copy(buf[8:16], tok)
	binary.BigEndian.PutUint64(buf[16:], uint64(size))
	binary.BigEndian.PutUint32(buf[24:], sums.Whole)
	binary.BigEndian.PutUint32(buf[28:], uint32(len(sums.Blocks)))
	for i, s := range sums.Blocks {
		binary.BigEndian.PutUint32(buf[sumsHdrLen+4*i:], s)
	}
	n := len(buf) - 4
	binary.BigEndian.PutUint32(buf[n:], segment.CRC32C(buf[:n]))
	return buf
}

// decodeSums parses a companion and checks that it belongs to an object
// of size bytes named by token.
func decodeSums(buf []byte, token string, size int64) (*segment.Checksums, error) {
	if len(buf) < sumsHdrLen+4 || string(buf[:8]) != sumsMagic {
		return nil, errors.New("not a scribefs sums object")
	}
	n := len(buf) - 4
	if segment.CRC32C(buf[:n]) != binary.BigEndian.Uint32(buf[n:]) {
		return nil, errors.New("sums object fails its own checksum")
	}
	if got := hex.EncodeToString(buf[8:16]); got != token {
		return nil, fmt.Errorf("sums object has token %s, the object names %s", got, token)
	}
	if got := int64(binary.BigEndian.Uint64(buf[16:])); got != size {
		return nil, fmt.Errorf("sums object describes %d bytes, the object has %d", got, size)
	}
	nblocks := int64(binary.BigEndian.Uint32(buf[28:]))
	if nblocks != (size+segment.BlockSize-1)/segment.BlockSize || int64(n) != sumsHdrLen+4*nblocks {
		return nil, fmt.Errorf("sums object has %d block sums for %d bytes", nblocks, size)
	}
	sums := &segment.Checksums{Whole: binary.BigEndian.Uint32(buf[24:]), Blocks: make([]uint32, nblocks)}
	for i := range sums.Blocks {
		sums.Blocks[i] = binary.BigEndian.Uint32(buf[sumsHdrLen+4*i:])
	}
	return sums, nil
}

// putSums writes the companion of a version about to be committed.
func (b *Backend) putSums(ctx context.Context, id segment.ID, token string, size int64, sums *segment.Checksums) error {
	body := encodeSums(token, size, sums)
	_, err := b.client.PutObject(ctx, &s3api.PutObjectInput{
		Bucket:         &b.cfg.Bucket,
		Key:            aws.String(b.sumsKey(id, token)),
		Body:           bytes.NewReader(body),
		ContentLength:  aws.Int64(int64(len(body))),
		ChecksumCRC32C: aws.String(crcBase64(segment.CRC32C(body))),
	})
	if err != nil {
		return b.fail(segOp("put sums of", id), err)
	}
	return nil
}

// loadSums reads the companion named by token for an object of size bytes
// whose metadata records whole (when known). Results are kept per version,
// so a version's companion is read once.
func (b *Backend) loadSums(ctx context.Context, id segment.ID, version, token string, size int64, whole *uint32) (*segment.Checksums, error) {
	k := versionKey{id, version}
	if s, ok := b.sumsCache.Get(k); ok {
		return s, nil
	}
	op := segOp("read sums of", id)
	out, err := b.client.GetObject(ctx, &s3api.GetObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.sumsKey(id, token))})
	if err != nil {
		return nil, b.fail(op, err)
	}
	defer out.Body.Close()
	buf, err := io.ReadAll(io.LimitReader(out.Body, maxSumsBody+1))
	if err != nil {
		return nil, b.fail(op, err)
	}
	sums, err := decodeSums(buf, token, size)
	if err == nil && whole != nil && sums.Whole != *whole {
		err = fmt.Errorf("sums object has crc32c %08x, the object records %08x", sums.Whole, *whole)
	}
	if err != nil {
		return nil, &edgeError{msg: fmt.Sprintf("s3 %s: %s: %v", op, b.sumsKey(id, token), err), kinds: []error{segment.ErrChecksum}}
	}
	if version != "" {
		b.sumsCache.Add(k, sums)
	}
	return sums, nil
}

type versionKey struct {
	id      segment.ID
	version string
}

// dropStale deletes the companions of id other than keep's ("" for all)
// and, when sidecar is set, a Scribe Ledger sidecar: after a Put they
// describe replaced or never-committed versions, after a Delete nothing.
// One listing of the segment's keys finds them. Failure is harmless
// (a stray companion is never read: objects name theirs by token) and is
// not an error of the Put or Delete.
func (b *Backend) dropStale(ctx context.Context, id segment.ID, keep string) {
	base := b.keyPrefix + id.Hex() + "."
	out, err := b.client.ListObjectsV2(ctx, &s3api.ListObjectsV2Input{Bucket: &b.cfg.Bucket, Prefix: aws.String(base)})
	if err != nil {
		return
	}
	for _, obj := range out.Contents {
		key := aws.ToString(obj.Key)
		rest := strings.TrimPrefix(key, base)
		stale := rest == "meta.json"
		if tok, ok := strings.CutSuffix(rest, sumsSuffix); ok && len(tok) == 2*tokenLen && tok != keep {
			stale = true
		}
		if stale {
			b.client.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(key)})
		}
	}
}
