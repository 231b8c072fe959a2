package s3

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/segment/ledger"
)

// Writing sidecars: Scribe Ledger nodes read an archived segment only
// through its sidecar (upstream ArchivalManager::retrieve_segment GETs
// segment-<hex>.meta.json first and reports no segment without it). So
// every Put of bytes that decode as a Scribe Ledger segment writes one after
// the .bin, as nodes do, and every other Put removes any sidecar left from
// an older version. The bytes are summarized as they stream to the store
// (ledger.Summarize: the keys and a hash per entry are held, never the
// values), so a Put costs one more request (the sidecar's PUT or DELETE)
// and no second read.
//
// What a node can read: plain bytes (is_compressed false), and the
// compress wrapper's gzip-blocks objects, whose frames form ONE gzip member
// (is_compressed true; the index members after it are ignored by flate2's
// GzDecoder, which stops after one member). zstd-blocks objects get no
// sidecar: no node can decode them.

// compressionGzipBlocks is compress.CompressionGzip, the one wrapper
// encoding whose object a node decodes.
const compressionGzipBlocks = "gzip-blocks"

// summarizer summarizes the bytes written to it in a goroutine.
type summarizer struct {
	pw   *io.PipeWriter
	done chan struct{}
	sum  *ledger.Summary
	err  error
}

// errNotSummarized is the summary error of a Put whose encoding no node reads.
var errNotSummarized = errors.New("a Scribe Ledger node cannot decode this encoding")

// newSummarizer starts the summary of bytes in the given encoding (see
// backend.PutOptions.Compression).
func newSummarizer(compression string) *summarizer {
	pr, pw := io.Pipe()
	s := &summarizer{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		br := bufio.NewReaderSize(pr, 64<<10)
		switch compression {
		case "":
			s.sum, s.err = ledger.Summarize(br)
		case compressionGzipBlocks:
			// Exactly what a node does: one gzip member, whose CRC is
			// checked at its end; whatever follows is not read.
			zr, err := gzip.NewReader(br)
			if err != nil {
				s.err = err
				break
			}
			zr.Multistream(false)
			s.sum, s.err = ledger.Summarize(zr)
		default:
			s.err = errNotSummarized
		}
		// Drain, so the Put's writes never block on a summary that ended.
		io.Copy(io.Discard, br)
	}()
	return s
}

func (s *summarizer) Write(p []byte) (int, error) {
	s.pw.Write(p) // fails only once the goroutine stopped reading: never
	return len(p), nil
}

// finish ends the input and returns the summary.
func (s *summarizer) finish() (*ledger.Summary, error) {
	s.pw.Close()
	<-s.done
	return s.sum, s.err
}

var errSummaryRestarted = errors.New("source rewound")

// summarizingSource passes a Put's source through, feeding a summarizer.
// Seeking (putObject's checksum pass over a seekable source) starts the
// summary afresh.
type summarizingSource struct {
	r           io.Reader
	compression string
	s           *summarizer
}

func (t *summarizingSource) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.s.Write(p[:n])
	}
	return n, err
}

type summarizingSeeker struct {
	*summarizingSource
	seeker io.Seeker
}

func (t summarizingSeeker) Seek(off int64, whence int) (int64, error) {
	pos, err := t.seeker.Seek(off, whence)
	t.s.pw.CloseWithError(errSummaryRestarted)
	<-t.s.done
	t.s = newSummarizer(t.compression)
	return pos, err
}

// summarizing wraps r; a seekable r stays seekable.
func summarizing(r io.Reader, compression string) (io.Reader, *summarizingSource) {
	src := &summarizingSource{r: r, compression: compression, s: newSummarizer(compression)}
	if sk, ok := r.(io.Seeker); ok {
		return summarizingSeeker{src, sk}, src
	}
	return src, src
}

// Put stores the segment (see putObject), then makes its sidecar match the
// new bytes: written for a Scribe Ledger segment, removed otherwise. When
// the sidecar can be neither written nor removed (an old one may describe
// other bytes), Put fails as unavailable so the retry wrapper writes both
// again; when only writing fails, the sidecar is removed and Put succeeds
// (nodes do not see the segment until it is written again, but never see
// it wrong).
func (b *Backend) Put(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions) (segment.Info, error) {
	// A node must never pair the new bytes with the old sidecar, even if
	// this Put stops (fails, crashes) between the .bin and the sidecar:
	// the old sidecar goes first, and if it cannot, nothing changes.
	if err := b.removeSidecar(ctx, id); err != nil {
		return segment.Info{}, err
	}
	r, src := summarizing(r, opts.Compression)
	info, err := b.putObject(ctx, id, r, opts)
	sum, serr := src.s.finish()
	if err != nil {
		return info, err
	}
	if err := b.syncSidecar(ctx, id, sum, serr, info.Size, opts.Compression != ""); err != nil {
		return segment.Info{}, err
	}
	return info, nil
}

// syncSidecar writes the sidecar of segment id, summarized as sum (serr
// when the bytes are no segment a node reads), stored in an object of
// stored bytes.
func (b *Backend) syncSidecar(ctx context.Context, id segment.ID, sum *ledger.Summary, serr error, stored int64, compressed bool) error {
	op := segOp("write sidecar of", id)
	var werr error
	if serr == nil {
		body := ledger.NewSidecar(uint64(id), sum, stored, compressed, time.Now().Unix()).Marshal()
		_, werr = b.client.PutObject(ctx, &s3api.PutObjectInput{
			Bucket:        &b.cfg.Bucket,
			Key:           aws.String(b.sidecarKey(id)),
			Body:          bytes.NewReader(body),
			ContentLength: aws.Int64(int64(len(body))),
			ContentType:   aws.String("application/json"),
		})
		if werr == nil {
			return nil
		}
	}
	_, derr := b.client.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.sidecarKey(id))})
	if derr == nil {
		return nil
	}
	f := b.classify(derr)
	return &edgeError{
		msg: fmt.Sprintf("s3 %s: %s may describe the previous version and could not be replaced or removed: %s",
			op, b.sidecarKey(id), b.scrub(f.detail)),
		kinds: []error{backend.ErrUnavailable},
	}
}

// removeSidecar deletes id's sidecar (absent is fine: S3 answers a DELETE
// of a missing key with success).
func (b *Backend) removeSidecar(ctx context.Context, id segment.ID) error {
	if _, err := b.client.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.sidecarKey(id))}); err != nil {
		return b.fail(segOp("remove sidecar of", id), err)
	}
	return nil
}

var _ backend.MerkleRoots = (*Backend)(nil)

// MerkleRoot returns the merkle_root of id's sidecar: nil when there is no
// sidecar or it carries none, an error naming the sidecar when it is not
// JSON or the root is not 32 byte values (segment.ErrChecksum: the record
// that should vouch for the bytes is damaged).
func (b *Backend) MerkleRoot(ctx context.Context, id segment.ID) ([]byte, error) {
	op := segOp("read sidecar of", id)
	out, err := b.client.GetObject(ctx, &s3api.GetObjectInput{Bucket: &b.cfg.Bucket, Key: aws.String(b.sidecarKey(id))})
	if err != nil {
		err = b.fail(op, err)
		if errors.Is(err, backend.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	defer out.Body.Close()
	var sc struct {
		MerkleRoot json.RawMessage `json:"merkle_root"`
	}
	bad := func(why string) error {
		return &edgeError{msg: fmt.Sprintf("s3 %s: %s %s", op, b.sidecarKey(id), why), kinds: []error{segment.ErrChecksum}}
	}
	if err := json.NewDecoder(io.LimitReader(out.Body, 1<<20)).Decode(&sc); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		if errors.As(err, &se) || errors.As(err, &te) || err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, bad("is not valid JSON")
		}
		return nil, b.fail(op, err)
	}
	if len(sc.MerkleRoot) == 0 || string(sc.MerkleRoot) == "null" {
		return nil, nil
	}
	root, err := ledger.ParseRoot(sc.MerkleRoot)
	if err != nil {
		return nil, bad(err.Error())
	}
	return root[:], nil
}

// HasSidecars reports whether the first page of the listing under the
// prefix (up to 1000 keys) holds a Scribe Ledger sidecar: a sign that nodes
// share the bucket. A sidecar sorts right after its segment, so a bucket
// whose first segments have sidecars shows one on that page.
func (b *Backend) HasSidecars(ctx context.Context) (bool, error) {
	out, err := b.client.ListObjectsV2(ctx, &s3api.ListObjectsV2Input{Bucket: &b.cfg.Bucket, Prefix: aws.String(b.keyPrefix)})
	if err != nil {
		return false, b.fail("list", err)
	}
	for _, obj := range out.Contents {
		if _, ok := b.parseSidecarKey(aws.ToString(obj.Key)); ok {
			return true, nil
		}
	}
	return false, nil
}
