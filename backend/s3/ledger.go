package s3

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/segment/ledger"
)

// Scribe Ledger nodes archive a segment as segment-<hex>.bin and may write a
// sidecar segment-<hex>.meta.json beside it. When the sidecar says
// is_compressed, the .bin is one gzip stream of the segment's bytes. A .bin
// without a sidecar is plain. Objects scribefs writes carry scribefs-*
// metadata, which describes them to scribefs (the compress wrapper finds its
// own format by the object's footer); for them a sidecar is only for the
// nodes sharing the bucket: Put writes it to match the new bytes (or
// removes it, sidecar.go) and Delete removes it after the object, so a node
// never pairs new bytes with an old sidecar.

// sidecar is the part of a .meta.json that scribefs needs.
type sidecar struct {
	SegmentID    *uint64 `json:"segment_id"`
	CreatedAt    *int64  `json:"created_at"`
	OriginalSize *uint64 `json:"original_size"`
	EntryCount   *uint64 `json:"entry_count"`
	IsCompressed bool    `json:"is_compressed"`
}

// CompressionScribeGzip marks an upstream whole-stream gzip object.
const CompressionScribeGzip = "gzip"

// maxInflate is the most deflate expands its input (1032:1, a stream of
// one repeated byte): a sidecar implying more than that for its object
// is false.
const maxInflate = 1032

func (b *Backend) sidecarKey(id segment.ID) string { return b.keyPrefix + id.Hex() + ".meta.json" }

func (b *Backend) parseSidecarKey(key string) (segment.ID, bool) {
	rest, ok := strings.CutPrefix(key, b.keyPrefix)
	if !ok {
		return 0, false
	}
	hex, ok := strings.CutSuffix(rest, ".meta.json")
	if !ok {
		return 0, false
	}
	id, err := segment.ParseHex(hex)
	return id, err == nil
}

// readSidecar fetches and checks id's sidecar; ok is false when it has none.
func (b *Backend) readSidecar(ctx context.Context, id segment.ID) (sc sidecar, ok bool, err error) {
	op := segOp("read sidecar of", id)
	out, err := b.client.GetObject(ctx, &s3api.GetObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.sidecarKey(id))})
	if err != nil {
		err = b.fail(op, err)
		if errors.Is(err, backend.ErrNotFound) {
			return sidecar{}, false, nil
		}
		return sidecar{}, false, err
	}
	defer out.Body.Close()
	sc, err = parseSidecar(id, io.LimitReader(out.Body, 1<<20))
	if err != nil {
		return sidecar{}, false, fmt.Errorf("s3 %s: %s %w", op, b.sidecarKey(id), err)
	}
	return sc, true, nil
}

// parseSidecar decodes and checks the sidecar of segment id; errors read
// after the sidecar's name.
func parseSidecar(id segment.ID, r io.Reader) (sidecar, error) {
	var sc sidecar
	if err := json.NewDecoder(r).Decode(&sc); err != nil {
		return sidecar{}, fmt.Errorf("is not valid JSON: %w", backend.ErrInvalid)
	}
	if sc.SegmentID != nil && *sc.SegmentID != uint64(id) {
		return sidecar{}, fmt.Errorf("names segment %d: %w", *sc.SegmentID, backend.ErrInvalid)
	}
	if sc.IsCompressed && (sc.OriginalSize == nil || sc.EntryCount == nil) {
		return sidecar{}, fmt.Errorf("lacks original_size or entry_count: %w", backend.ErrInvalid)
	}
	return sc, nil
}

// decodedSize is the length of the segment a compressed object of stored
// bytes holds, as sc implies it; an error when sc's sizes overflow or
// imply more than deflate can make of stored bytes.
func (sc sidecar) decodedSize(stored int64) (int64, error) {
	size, err := ledger.CheckedEncodedLen(*sc.OriginalSize, *sc.EntryCount)
	if err == nil && size > maxInflate*stored+64 {
		err = fmt.Errorf("it implies %d bytes, more than deflate can make of the %d-byte object", size, stored)
	}
	return size, err
}

func ours(meta map[string]string) bool {
	_, ok := meta[metaCRC32C]
	return ok
}

// Stat returns the segment's Info (see statWithMeta). For an object written
// by Scribe Ledger with a sidecar, the size is the decoded length, which the
// sidecar implies (original_size + 32 + 16 × entry_count), and the mtime is
// its created_at.
func (b *Backend) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	info, meta, err := b.statWithMeta(ctx, id)
	if err != nil || ours(meta) {
		return info, err
	}
	sc, ok, err := b.readSidecar(ctx, id)
	if err != nil || !ok {
		return info, err
	}
	if sc.CreatedAt != nil {
		info.ModTime = time.Unix(*sc.CreatedAt, 0).UTC()
	}
	if sc.IsCompressed {
		size, err := sc.decodedSize(info.Size)
		if err != nil {
			// The segment cannot be read: EIO on the mount, a problem in
			// verify; never a size made up from the sidecar.
			return segment.Info{}, &edgeError{msg: fmt.Sprintf("s3 %s: %s does not describe %s: %v",
				segOp("stat", id), b.sidecarKey(id), b.key(id), err), kinds: []error{segment.ErrChecksum}}
		}
		info.StoredSize = info.Size
		info.Size = size
		info.Compression = CompressionScribeGzip
		info.Sums = nil // gzip's own CRC checks these bytes
	}
	return info, nil
}

// Get returns the segment's bytes (see getObject). A whole-stream gzip
// object is read from its start and decompressed; the range is cut from the
// decoded bytes, and a gzip error (bad CRC, truncation) is a checksum error.
func (b *Backend) Get(ctx context.Context, id segment.ID, opts backend.GetOptions) (io.ReadCloser, error) {
	if opts.Compression != CompressionScribeGzip {
		return b.getObject(ctx, id, opts)
	}
	op := segOp("get", id)
	r, err := b.getObject(ctx, id, backend.GetOptions{Length: -1, Version: opts.Version})
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bufio.NewReader(r))
	if err != nil {
		r.Close()
		return nil, gzipError(op, err)
	}
	if _, err := io.CopyN(io.Discard, zr, opts.Offset); err != nil && err != io.EOF {
		r.Close()
		return nil, gzipError(op, err)
	}
	var body io.Reader = zr
	if opts.Length >= 0 {
		body = io.LimitReader(zr, opts.Length)
	}
	return &gunzipReader{Reader: body, zr: zr, raw: r, op: op}, nil
}

type gunzipReader struct {
	io.Reader
	zr  *gzip.Reader
	raw io.ReadCloser
	op  string
}

func (g *gunzipReader) Read(p []byte) (int, error) {
	n, err := g.Reader.Read(p)
	if err != nil && err != io.EOF {
		var ee *edgeError
		if !errors.As(err, &ee) {
			err = gzipError(g.op, err)
		}
	}
	return n, err
}

func (g *gunzipReader) Close() error { return g.raw.Close() }

func gzipError(op string, err error) error {
	if errors.Is(err, backend.ErrUnavailable) {
		return err
	}
	return &edgeError{msg: fmt.Sprintf("s3 %s: gzip object is corrupt: %v", op, err), kinds: []error{segment.ErrChecksum}}
}

// Delete removes the segment (see deleteObject), then its sidecar and
// companions.
//
// A sidecar left without its .bin makes a node fail instead of seeing no
// segment, so Delete fails when the sidecar cannot be removed: the tier
// then keeps the delete to carry out again (the .bin is gone already; a
// second Delete finds nothing to delete and removes the sidecar).
func (b *Backend) Delete(ctx context.Context, id segment.ID, ifVersion string) error {
	if err := b.deleteObject(ctx, id, ifVersion); err != nil {
		return err
	}
	if err := b.removeSidecar(ctx, id); err != nil {
		return err
	}
	b.dropStale(ctx, id, "")
	return nil
}
