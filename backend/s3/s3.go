package s3

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// sdkChecksumValidator is the id of the SDK middleware that validates
// response checksums.
const sdkChecksumValidator = "AWSChecksum:ValidateOutputPayloadChecksum"

// User metadata keys (stored as x-amz-meta-*).
const (
	metaMtime   = "scribefs-mtime"   // user-visible mtime, unix nanoseconds
	metaCRC32C  = "scribefs-crc32c"  // CRC32C of the whole segment, 8 hex digits
	metaWritten = "scribefs-written" // when this store wrote it, unix nanoseconds
	metaBlocks  = "scribefs-blocks"  // base64 of the big-endian block CRC32Cs, when small enough
)

// Backend is a backend.Backend on one S3 bucket. All methods are safe for
// concurrent use.
type Backend struct {
	cfg       Config
	client    *s3api.Client
	http      httpDoer // the frozen SDK client under the idle watchdog
	keyPrefix string   // cfg.Prefix + "segment-"
	bufs      sync.Pool
	pageSize  int32 // ListObjectsV2 MaxKeys; 0 lets the store choose (tests lower it)
	// metaBlocksMax is the most bytes of base64 block sums kept in user
	// metadata (maxBlocksMeta; tests lower it); more go to a companion.
	metaBlocksMax int
	// sumsCache holds companions read, per object version.
	sumsCache *lru.Cache[versionKey, *segment.Checksums]
}

var _ backend.Backend = (*Backend)(nil)

// New returns a backend for the bucket described by cfg. It does not contact
// the store: call Health to check the endpoint, credentials and bucket, and
// AbortIncompleteUploads to clean up after a crash.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	// The SDK must build the HTTP client itself: AWS_CA_BUNDLE is applied by
	// LoadDefaultConfig to a BuildableClient and refused for any other.
	poolSize := cfg.PoolSize
	insecure := cfg.InsecureSkipVerify
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConnsPerHost = poolSize
		tr.MaxConnsPerHost = poolSize
		if tr.MaxIdleConns < poolSize {
			tr.MaxIdleConns = poolSize
		}
		if insecure {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			tr.TLSClientConfig.InsecureSkipVerify = true
		}
	})
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(hc),
		// Retries are the retry wrapper's, so that a retry count means
		// exactly one thing.
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		// We send our own CRC32C headers and verify full reads ourselves.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		// These errors concern configuration files and never carry secrets
		// from cfg, but scrub anyway.
		b := &Backend{cfg: cfg}
		return nil, fmt.Errorf("s3 config: %w: loading AWS configuration: %s", backend.ErrInvalid, b.scrub(err.Error()))
	}
	if awsCfg.Region == "" {
		awsCfg.Region = DefaultRegion
	}
	cfg.Region = awsCfg.Region
	frozen := awsCfg.HTTPClient
	if bc, ok := frozen.(*awshttp.BuildableClient); ok {
		frozen = bc.Freeze()
	}
	sumsCache, _ := lru.New[versionKey, *segment.Checksums](sumsCacheSize)
	b := &Backend{
		cfg:           cfg,
		http:          frozen,
		keyPrefix:     cfg.Prefix + "segment-",
		metaBlocksMax: maxBlocksMeta,
		sumsCache:     sumsCache,
	}
	awsCfg.HTTPClient = &idleClient{next: frozen, idle: cfg.Timeout}
	b.client = s3api.NewFromConfig(awsCfg, func(o *s3api.Options) {
		o.UsePathStyle = cfg.PathStyle
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.Retryer = aws.NopRetryer{}
		// A library does not write to stderr; failures reach the caller
		// as errors.
		o.Logger = logging.Nop{}
		// The SDK would verify a whole GET's checksum header too, failing
		// with an unexported error type; objectReader does it and returns
		// segment.ErrChecksum.
		o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
			stack.Deserialize.Remove(sdkChecksumValidator)
			return nil
		})
	})
	return b, nil
}

// Close releases idle connections. Requests in flight are not interrupted.
func (b *Backend) Close() error {
	if c, ok := b.http.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	return nil
}

// endpointName is how messages name the store.
func (b *Backend) endpointName() string {
	if b.cfg.Endpoint != "" {
		return b.cfg.Endpoint
	}
	return "s3." + b.cfg.Region + ".amazonaws.com"
}

// key is the object key of a segment: the Scribe Ledger layout,
// <prefix>segment-<16 lowercase hex digits>.bin, whose lexical order is the
// numeric order of ids.
func (b *Backend) key(id segment.ID) string { return b.keyPrefix + id.Hex() + ".bin" }

// parseKey returns the id of a segment key, and false for every other key
// (Scribe Ledger's .meta.json sidecars, uppercase or short hex, strays).
func (b *Backend) parseKey(key string) (segment.ID, bool) {
	rest, ok := strings.CutPrefix(key, b.keyPrefix)
	if !ok {
		return 0, false
	}
	hex, ok := strings.CutSuffix(rest, ".bin")
	if !ok {
		return 0, false
	}
	id, err := segment.ParseHex(hex)
	return id, err == nil
}

func (b *Backend) readOnly(op string) error {
	if b.cfg.ReadOnly {
		return &edgeError{msg: "s3 " + op + ": read-only: the store is opened read-only", kinds: []error{backend.ErrReadOnly}}
	}
	return nil
}

func invalid(op, format string, args ...any) error {
	return &edgeError{msg: "s3 " + op + ": invalid: " + fmt.Sprintf(format, args...), kinds: []error{backend.ErrInvalid}}
}

// Put stores the segment. Segments up to MultipartThreshold are buffered and
// sent with one PutObject; larger ones stream through a multipart upload that
// becomes visible only when completed and is aborted on any failure, so Put is
// atomic either way. Every request carries the CRC32C of its body, which the
// store verifies, and the checksum the store reports back is compared with
// ours. The checksums are also kept for Stat: in user metadata when they
// fit, else in the companion object (sums.go). For a multipart upload the
// metadata is fixed before the first byte is sent, so sums come from
// opts.Sums or, for an io.Seeker source, a first pass over it; an
// unseekable source without opts.Sums gets its sums into the companion,
// written before the upload is completed.
func (b *Backend) putObject(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions) (segment.Info, error) {
	op := segOp("put", id)
	if err := b.readOnly(op); err != nil {
		return segment.Info{}, err
	}
	if opts.Size > maxObjectSize {
		return segment.Info{}, &edgeError{msg: fmt.Sprintf("s3 %s: segment too large: %d bytes exceeds the S3 limit of %d", op, opts.Size, int64(maxObjectSize)), kinds: []error{backend.ErrTooLarge}}
	}
	seeker, _ := r.(io.Seeker)
	start := int64(-1)
	if seeker != nil {
		if pos, err := seeker.Seek(0, io.SeekCurrent); err == nil {
			start = pos
		}
	}
	threshold := b.cfg.MultipartThreshold
	src := r
	if opts.Size < 0 || opts.Size <= threshold {
		limit := threshold
		if opts.Size >= 0 {
			limit = opts.Size
		}
		head, err := readUpTo(r, limit+1)
		if err != nil {
			return segment.Info{}, fmt.Errorf("s3 %s: reading source: %w", op, err)
		}
		if int64(len(head)) <= threshold {
			if opts.Size >= 0 && int64(len(head)) != opts.Size {
				return segment.Info{}, sizeMismatch(op, opts.Size, int64(len(head)))
			}
			return b.putSingle(ctx, id, head, opts)
		}
		if opts.Size >= 0 {
			return segment.Info{}, invalid(op, "source is longer than the declared %d bytes", opts.Size)
		}
		src = io.MultiReader(bytes.NewReader(head), r)
	}

	size, expect := opts.Size, opts.Sums
	if expect == nil && start >= 0 {
		sums, n, err := sumSource(ctx, seeker, start)
		if err != nil {
			return segment.Info{}, fmt.Errorf("s3 %s: reading source: %w", op, err)
		}
		if size >= 0 && n != size {
			return segment.Info{}, sizeMismatch(op, size, n)
		}
		size, expect, src = n, sums, r
	}
	return b.putMultipart(ctx, id, src, size, expect, opts)
}

func sizeMismatch(op string, want, got int64) error {
	return invalid(op, "source yielded %d bytes, declared %d", got, want)
}

// readUpTo reads until EOF or limit bytes, growing the buffer as it goes so a
// small segment of unknown size does not cost a threshold-sized allocation.
func readUpTo(r io.Reader, limit int64) ([]byte, error) {
	buf := make([]byte, 0, min(limit, 64<<10))
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(limit, int64(2*cap(buf))))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// sumSource checksums a seekable source from start to EOF and seeks back.
func sumSource(ctx context.Context, s io.Seeker, start int64) (*segment.Checksums, int64, error) {
	r, ok := s.(io.Reader)
	if !ok {
		return nil, 0, errors.New("seeker is not a reader")
	}
	if _, err := s.Seek(start, io.SeekStart); err != nil {
		return nil, 0, err
	}
	var sum segment.Summer
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		n, err := r.Read(buf)
		sum.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, err
		}
	}
	if _, err := s.Seek(start, io.SeekStart); err != nil {
		return nil, 0, err
	}
	return sum.Sums(), sum.Size(), nil
}

func (b *Backend) putSingle(ctx context.Context, id segment.ID, data []byte, opts backend.PutOptions) (segment.Info, error) {
	op := segOp("put", id)
	sums := segment.Sum(data)
	if opts.Sums != nil && !sums.Equal(opts.Sums) {
		return segment.Info{}, checksumMismatch(op, opts.Sums, sums)
	}
	now := time.Now()
	mtime := opts.ModTime
	if mtime.IsZero() {
		mtime = now
	}
	want := crcBase64(sums.Whole)
	token := ""
	if !b.blocksFit(sums) {
		token = newToken()
		if err := b.putSums(ctx, id, token, int64(len(data)), sums); err != nil {
			return segment.Info{}, err
		}
	}
	out, err := b.client.PutObject(ctx, &s3api.PutObjectInput{
		Bucket:         &b.cfg.Bucket,
		Key:            aws.String(b.key(id)),
		Body:           bytes.NewReader(data),
		ContentLength:  aws.Int64(int64(len(data))),
		ChecksumCRC32C: aws.String(want),
		Metadata:       b.metadata(mtime, now, sums, token),
	})
	if err != nil {
		return segment.Info{}, b.fail(op, err)
	}
	b.dropStale(ctx, id, token)
	if got := aws.ToString(out.ChecksumCRC32C); got != "" && got != want {
		b.discard(ctx, id, aws.ToString(out.ETag))
		return segment.Info{}, transitMismatch(op, "object", want, got)
	}
	return segment.Info{
		ID: id, Size: int64(len(data)), ModTime: mtime, Tier: segment.TierCold,
		Version: aws.ToString(out.ETag), Sums: sums, WrittenAt: now,
	}, nil
}

func checksumMismatch(op string, want, got *segment.Checksums) error {
	return &edgeError{
		msg:   fmt.Sprintf("s3 %s: checksum mismatch: source has %v, expected %v", op, got, want),
		kinds: []error{segment.ErrChecksum},
	}
}

// transitMismatch reports a checksum the store returned that differs from the
// one we sent: the bytes were damaged on the way, which a retry may fix.
func transitMismatch(op, what, want, got string) error {
	return &edgeError{
		msg:   fmt.Sprintf("s3 %s: checksum mismatch in transit: store reports crc32c %s for the %s, sent %s", op, got, what, want),
		kinds: []error{segment.ErrChecksum, backend.ErrUnavailable},
	}
}

// discard removes an object we just wrote whose stored checksum disagrees
// with ours, so that damaged bytes are not served; best effort.
func (b *Backend) discard(ctx context.Context, id segment.ID, etag string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	in := &s3api.DeleteObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.key(id))}
	if etag != "" {
		in.IfMatch = aws.String(etag)
	}
	b.client.DeleteObject(ctx, in)
}

func crcBase64(v uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return base64.StdEncoding.EncodeToString(b[:])
}

// metadata is the user metadata of a new object; sums may be nil when they
// are not known before the upload starts. token, when set, names the
// companion that holds the block sums (see sums.go); otherwise they are
// kept here, as they fit.
func (b *Backend) metadata(mtime, written time.Time, sums *segment.Checksums, token string) map[string]string {
	m := map[string]string{
		metaMtime:   strconv.FormatInt(unixNano(mtime), 10),
		metaWritten: strconv.FormatInt(unixNano(written), 10),
	}
	if token != "" {
		m[metaSums] = token
	}
	if sums != nil {
		m[metaCRC32C] = fmt.Sprintf("%08x", sums.Whole)
		if token == "" && len(sums.Blocks) > 0 && b.blocksFit(sums) {
			raw := make([]byte, 4*len(sums.Blocks))
			for i, s := range sums.Blocks {
				binary.BigEndian.PutUint32(raw[4*i:], s)
			}
			// S3 allows 2 KiB of user metadata in all.
			m[metaBlocks] = base64.StdEncoding.EncodeToString(raw)
		}
	}
	return m
}

// unixNano clamps t into the range int64 nanoseconds can hold (years
// 1678..2262) rather than storing garbage for a far-off mtime.
func unixNano(t time.Time) int64 {
	lo, hi := time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)
	switch {
	case t.Before(lo):
		return math.MinInt64
	case t.After(hi):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// statWithMeta returns the segment's Info, and the object's user
// metadata, from a HEAD request. ModTime is the mtime
// recorded by Put (the object's LastModified for objects written by other
// programs). Sums come from the metadata Put recorded; an object without it
// gets the whole-object CRC32C the store computed, when the store has a
// full-object one. Block sums too many for the metadata (a segment over
// about 280 blocks, or a multipart upload whose sums were not known when it
// started) come from the companion object the metadata names (sums.go),
// read once per version. Blocks is nil when none were recorded (objects of
// other programs) or the companion is missing or damaged, except that a
// segment of at most one block has its single block sum equal to the whole
// sum.
func (b *Backend) statWithMeta(ctx context.Context, id segment.ID) (segment.Info, map[string]string, error) {
	out, err := b.client.HeadObject(ctx, &s3api.HeadObjectInput{
		Bucket:       &b.cfg.Bucket,
		Key:          aws.String(b.key(id)),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return segment.Info{}, nil, b.fail(segOp("stat", id), err)
	}
	size := aws.ToInt64(out.ContentLength)
	info := segment.Info{
		ID:        id,
		Size:      size,
		ModTime:   aws.ToTime(out.LastModified),
		WrittenAt: aws.ToTime(out.LastModified),
		Tier:      segment.TierCold,
		Version:   aws.ToString(out.ETag),
		Sums:      sumsFrom(out.Metadata, aws.ToString(out.ChecksumCRC32C), size),
	}
	if t, ok := metaTime(out.Metadata, metaMtime); ok {
		info.ModTime = t
	}
	if t, ok := metaTime(out.Metadata, metaWritten); ok {
		info.WrittenAt = t
	}
	if token := out.Metadata[metaSums]; token != "" && (info.Sums == nil || len(info.Sums.Blocks) == 0) {
		var whole *uint32
		if info.Sums != nil {
			whole = &info.Sums.Whole
		}
		sums, err := b.loadSums(ctx, id, info.Version, token, size, whole)
		switch {
		case err == nil:
			info.Sums = sums
		case backend.IsTransient(err):
			return segment.Info{}, nil, err
		}
		// A companion missing or damaged leaves the whole-object sum
		// only: a whole read is still checked, and the tier learns the
		// block sums from one (tier.fetcher.fillColdSums).
	}
	return info, out.Metadata, nil
}

func metaTime(meta map[string]string, key string) (time.Time, bool) {
	v, ok := meta[key]
	if !ok {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

// sumsFrom decodes the recorded checksums; anything malformed is ignored
// rather than trusted.
func sumsFrom(meta map[string]string, storeCRC string, size int64) *segment.Checksums {
	var whole uint32
	known := false
	if v, ok := meta[metaCRC32C]; ok && len(v) == 8 {
		if n, err := strconv.ParseUint(v, 16, 32); err == nil {
			whole, known = uint32(n), true
		}
	}
	if !known && storeCRC != "" && !strings.Contains(storeCRC, "-") {
		// A composite checksum ("...-N") is a checksum of part checksums,
		// not of the bytes; only a full-object one will do.
		if raw, err := base64.StdEncoding.DecodeString(storeCRC); err == nil && len(raw) == 4 {
			whole, known = binary.BigEndian.Uint32(raw), true
		}
	}
	if !known {
		return nil
	}
	nblocks := (size + segment.BlockSize - 1) / segment.BlockSize
	sums := &segment.Checksums{Whole: whole}
	if v, ok := meta[metaBlocks]; ok {
		raw, err := base64.StdEncoding.DecodeString(v)
		if err == nil && int64(len(raw)) == 4*nblocks {
			sums.Blocks = make([]uint32, nblocks)
			for i := range sums.Blocks {
				sums.Blocks[i] = binary.BigEndian.Uint32(raw[4*i:])
			}
		}
	}
	if sums.Blocks == nil && nblocks == 1 {
		sums.Blocks = []uint32{whole}
	}
	return sums
}

// Get returns the segment's bytes. A range starting at or past the end is
// answered 416 by S3; Get then confirms with a HEAD that the object exists
// (and has opts.Version) and returns an empty reader. opts.Version is sent as
// If-Match, so a replaced object fails with ErrStale instead of mixing
// versions. A whole-object read is checked against the recorded CRC32C at EOF
// and fails with segment.ErrChecksum on a mismatch. The reader reports the
// ETag it is reading through a Version method, so the retry wrapper can
// resume it without splicing two versions.
func (b *Backend) getObject(ctx context.Context, id segment.ID, opts backend.GetOptions) (io.ReadCloser, error) {
	op := segOp("get", id)
	if opts.Offset < 0 {
		return nil, invalid(op, "negative offset %d", opts.Offset)
	}
	if opts.Length == 0 {
		return b.emptyReader(ctx, id, opts.Version)
	}
	whole := opts.Offset == 0 && opts.Length < 0
	in := &s3api.GetObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.key(id))}
	if opts.Version != "" {
		in.IfMatch = aws.String(opts.Version)
	}
	if whole {
		in.ChecksumMode = types.ChecksumModeEnabled
	} else if opts.Length < 0 || opts.Length > math.MaxInt64-opts.Offset {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", opts.Offset))
	} else {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", opts.Offset, opts.Offset+opts.Length-1))
	}
	out, err := b.client.GetObject(ctx, in)
	if err != nil {
		f := b.classify(err)
		if f.kind == kindInvalidRange {
			return b.emptyReader(ctx, id, opts.Version)
		}
		return nil, b.failure(op, f)
	}
	r := &objectReader{b: b, op: op, body: out.Body, version: aws.ToString(out.ETag)}
	if whole {
		if sums := sumsFrom(out.Metadata, aws.ToString(out.ChecksumCRC32C), aws.ToInt64(out.ContentLength)); sums != nil {
			r.verify, r.want = true, sums.Whole
		}
	}
	return r, nil
}

// emptyReader answers a read that yields no bytes, after checking that the
// segment exists (and is opts.Version) as a real read would.
func (b *Backend) emptyReader(ctx context.Context, id segment.ID, version string) (io.ReadCloser, error) {
	in := &s3api.HeadObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.key(id))}
	if version != "" {
		in.IfMatch = aws.String(version)
	}
	out, err := b.client.HeadObject(ctx, in)
	if err != nil {
		return nil, b.fail(segOp("get", id), err)
	}
	return &objectReader{b: b, body: http.NoBody, version: aws.ToString(out.ETag)}, nil
}

// objectReader converts body errors at the edge and checks whole reads.
type objectReader struct {
	b       *Backend
	op      string
	body    io.ReadCloser
	version string
	verify  bool
	want    uint32
	crc     uint32
}

// Version is the ETag of the object being read.
func (r *objectReader) Version() string { return r.version }

// WholeCRC32C is the CRC32C a whole read is checked against at EOF; ok is
// false for a ranged read or an object that records none. The retry
// wrapper uses it to check a whole read it had to resume in ranges.
func (r *objectReader) WholeCRC32C() (uint32, bool) { return r.want, r.verify }

func (r *objectReader) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if r.verify {
		r.crc = crc32.Update(r.crc, castagnoli, p[:n])
	}
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		if r.verify && r.crc != r.want {
			r.verify = false
			return n, &edgeError{
				msg:   fmt.Sprintf("s3 %s: checksum mismatch: read crc32c %08x, recorded %08x", r.op, r.crc, r.want),
				kinds: []error{segment.ErrChecksum},
			}
		}
		return n, io.EOF
	}
	return n, r.b.fail(r.op, err)
}

func (r *objectReader) Close() error {
	r.body.Close()
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Delete removes the segment. S3 deletes missing keys without complaint, so a
// HEAD (conditional on ifVersion) comes first to report ErrNotFound and
// ErrStale. ifVersion is also sent as If-Match on the DELETE, which AWS S3
// enforces atomically; MinIO ignores it, so there a Put landing between the
// HEAD and the DELETE can be deleted although its version differs.
func (b *Backend) deleteObject(ctx context.Context, id segment.ID, ifVersion string) error {
	op := segOp("delete", id)
	if err := b.readOnly(op); err != nil {
		return err
	}
	head := &s3api.HeadObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.key(id))}
	del := &s3api.DeleteObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.key(id))}
	if ifVersion != "" {
		head.IfMatch = aws.String(ifVersion)
		del.IfMatch = aws.String(ifVersion)
	}
	if _, err := b.client.HeadObject(ctx, head); err != nil {
		return b.fail(op, err)
	}
	if _, err := b.client.DeleteObject(ctx, del); err != nil {
		return b.fail(op, err)
	}
	return nil
}

// List streams the segments page by page in ascending id order. It reports
// only keys in the segment layout; ModTime is the object's LastModified
// (listings carry no user metadata) and Sums is nil.
func (b *Backend) List(ctx context.Context, fn func(segment.Info) error) error {
	in := &s3api.ListObjectsV2Input{Bucket: &b.cfg.Bucket, Prefix: aws.String(b.keyPrefix)}
	if b.pageSize > 0 {
		in.MaxKeys = aws.Int32(b.pageSize)
	}
	// A Scribe Ledger sidecar sorts right after its segment
	// ("segment-X.bin" < "segment-X.meta.json"), so each segment is held
	// back until the next key shows whether it has one.
	var pending *segment.Info
	flush := func() error {
		if pending == nil {
			return nil
		}
		info := *pending
		pending = nil
		return fn(info)
	}
	pages := s3api.NewListObjectsV2Paginator(b.client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return b.fail("list", err)
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			if id, ok := b.parseSidecarKey(key); ok {
				if pending != nil && pending.ID == id {
					pending.Unresolved = true
				}
				continue
			}
			id, ok := b.parseKey(key)
			if !ok {
				continue
			}
			if err := flush(); err != nil {
				return err
			}
			pending = &segment.Info{
				ID:         id,
				Size:       aws.ToInt64(obj.Size),
				StoredSize: aws.ToInt64(obj.Size),
				ModTime:    aws.ToTime(obj.LastModified),
				WrittenAt:  aws.ToTime(obj.LastModified),
				Tier:       segment.TierCold,
				Version:    aws.ToString(obj.ETag),
			}
		}
	}
	return flush()
}

// Health checks, in one attempt of at most a few seconds, that the endpoint
// answers, accepts the credentials and has the bucket. Its errors are one
// line and tell the three usual misconfigurations apart: "credentials
// rejected by <endpoint>: ..." (ErrPermission), "bucket <name> does not
// exist" (ErrInvalid) and "cannot reach <endpoint>: ..." (ErrUnavailable).
func (b *Backend) Health(ctx context.Context) error {
	hctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	// ListObjectsV2 rather than HeadBucket: a HEAD reply has no body, so a
	// bad secret and a refused permission are both a bare 403 there.
	_, err := b.client.ListObjectsV2(hctx, &s3api.ListObjectsV2Input{
		Bucket:  &b.cfg.Bucket,
		Prefix:  aws.String(b.keyPrefix),
		MaxKeys: aws.Int32(1),
	})
	if err == nil {
		return nil
	}
	f := b.classify(err)
	if f.kind == kindCanceled && ctx.Err() == nil {
		f = failure{kind: kindUnreachable, detail: fmt.Sprintf("no answer within %v", healthTimeout)}
	}
	e := func(msg string, kinds ...error) error { return &edgeError{msg: msg, kinds: kinds} }
	switch f.kind {
	case kindCredentials:
		return e(fmt.Sprintf("credentials rejected by %s: %s", b.endpointName(), f.detail), backend.ErrPermission)
	case kindNoBucket:
		return e(fmt.Sprintf("bucket %s does not exist at %s", b.cfg.Bucket, b.endpointName()), backend.ErrInvalid)
	case kindUnreachable, kindUnavailable:
		return e(fmt.Sprintf("cannot reach %s: %s", b.endpointName(), f.detail), backend.ErrUnavailable)
	case kindDenied:
		return e(fmt.Sprintf("access to bucket %s denied by %s: %s", b.cfg.Bucket, b.endpointName(), f.detail), backend.ErrPermission)
	}
	return b.failure("health check", f)
}

// AbortIncompleteUploads aborts the multipart uploads of segment keys under
// the prefix that were initiated before olderThan, and returns how many it
// aborted. Uploads a crashed Put left behind are invisible but billed; the
// caller runs this at start with olderThan well in the past, since a younger
// upload may belong to a Put still running elsewhere. Keys outside the
// segment layout are left alone.
func (b *Backend) AbortIncompleteUploads(ctx context.Context, olderThan time.Time) (int, error) {
	const op = "abort incomplete uploads"
	if err := b.readOnly(op); err != nil {
		return 0, err
	}
	// No Prefix: MinIO treats it as an exact key, not a prefix, and would
	// list nothing. The listing is paged and filtered here instead.
	pages := s3api.NewListMultipartUploadsPaginator(b.client, &s3api.ListMultipartUploadsInput{
		Bucket: &b.cfg.Bucket,
	})
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return n, b.fail(op, err)
		}
		for _, u := range page.Uploads {
			if _, ok := b.parseKey(aws.ToString(u.Key)); !ok || !aws.ToTime(u.Initiated).Before(olderThan) {
				continue
			}
			_, err := b.client.AbortMultipartUpload(ctx, &s3api.AbortMultipartUploadInput{
				Bucket: &b.cfg.Bucket, Key: u.Key, UploadId: u.UploadId,
			})
			if err != nil {
				if f := b.classify(err); f.kind != kindNoSuchUpload { // already gone: someone else aborted it
					return n, b.failure(op, f)
				}
				continue
			}
			n++
		}
	}
	return n, nil
}
