package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// abortTimeout bounds the clean-up of a failed upload, which runs even when
// the caller's context is already cancelled.
const abortTimeout = 30 * time.Second

// partSize returns the size of part num (1-based) of an upload of size bytes
// (-1: unknown). A known size gets one part size, raised so the upload fits in
// 10,000 parts; an unknown one starts at the configured size and doubles
// every 2,000 parts, which reaches about 500 GiB with the default 8 MiB
// parts. Part sizes stay multiples of segment.BlockSize.
func (b *Backend) partSize(size int64, num int32) int64 {
	ps := b.cfg.PartSize
	if size >= 0 {
		need := (size + maxParts - 1) / maxParts
		need = (need + segment.BlockSize - 1) / segment.BlockSize * segment.BlockSize
		return max(ps, need)
	}
	for n := (num - 1) / 2000; n > 0 && ps*2 <= maxPartSize; n-- {
		ps *= 2
	}
	return ps
}

// getBuf returns a buffer of n bytes, pooled when it has the configured part
// size (the common case), so that back-to-back Puts reuse their buffers.
func (b *Backend) getBuf(n int64) []byte {
	if n == b.cfg.PartSize {
		if p, ok := b.bufs.Get().(*[]byte); ok {
			return *p
		}
	}
	return make([]byte, n)
}

func (b *Backend) putBuf(buf []byte) {
	if int64(cap(buf)) == b.cfg.PartSize {
		buf = buf[:cap(buf)]
		b.bufs.Put(&buf)
	}
}

// part is one part handed from the reading loop to an uploader.
type part struct {
	num int32
	buf []byte
}

// upload is the state of one multipart Put.
type upload struct {
	b        *Backend
	op       string
	key      string
	uploadID *string
	ctx      context.Context // cancelled with the first failure
	cancel   context.CancelCauseFunc

	mu    sync.Mutex // guards done and err
	done  []types.CompletedPart
	err   error
	onErr sync.Once
}

// fail records the first failure and stops the other uploaders.
func (u *upload) fail(err error) {
	u.onErr.Do(func() {
		u.mu.Lock()
		u.err = err
		u.mu.Unlock()
		u.cancel(err)
	})
}

func (u *upload) firstErr() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// putMultipart streams src through a multipart upload: the reading loop fills
// part buffers and checksums the stream while Concurrency uploaders send the
// parts; at most Concurrency+1 buffers exist. The upload is completed only
// when the stream had the declared size and the expected checksums (expect,
// when known, is also what the metadata records), and aborted otherwise, so
// the object appears whole or not at all. The store is asked for a
// full-object CRC32C, which it checks at completion against ours. Block
// sums that do not fit the metadata are written to the companion object
// (sums.go) before the upload is completed.
func (b *Backend) putMultipart(ctx context.Context, id segment.ID, src io.Reader, size int64, expect *segment.Checksums, opts backend.PutOptions) (segment.Info, error) {
	op := segOp("put", id)
	if size > maxObjectSize {
		return segment.Info{}, &edgeError{msg: fmt.Sprintf("s3 %s: segment too large: %d bytes exceeds the S3 limit of %d", op, size, int64(maxObjectSize)), kinds: []error{backend.ErrTooLarge}}
	}
	now := time.Now()
	mtime := opts.ModTime
	if mtime.IsZero() {
		mtime = now
	}
	key := b.key(id)
	// The metadata is fixed here: sums not known yet, or too many for it,
	// go to a companion written before the upload is completed.
	token := ""
	if !b.blocksFit(expect) {
		token = newToken()
	}
	created, err := b.client.CreateMultipartUpload(ctx, &s3api.CreateMultipartUploadInput{
		Bucket:            &b.cfg.Bucket,
		Key:               &key,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		ChecksumType:      types.ChecksumTypeFullObject,
		Metadata:          b.metadata(mtime, now, expect, token),
	})
	if err != nil {
		return segment.Info{}, b.fail(op, err)
	}
	uctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	u := &upload{b: b, op: op, key: key, uploadID: created.UploadId, ctx: uctx, cancel: cancel}
	completed := false
	defer func() {
		if !completed {
			u.abort(ctx)
		}
	}()

	sums, total, err := u.send(src, size)
	if err == nil {
		err = u.firstErr()
	}
	if err != nil {
		return segment.Info{}, err
	}
	if size >= 0 && total != size {
		return segment.Info{}, sizeMismatch(op, size, total)
	}
	if expect != nil && !sums.Equal(expect) {
		return segment.Info{}, checksumMismatch(op, expect, sums)
	}
	if total == 0 {
		// Unreachable through Put (empty streams go to putSingle), but S3
		// refuses to complete an upload without parts.
		return segment.Info{}, invalid(op, "empty multipart upload")
	}
	if token != "" {
		if err := b.putSums(ctx, id, token, total, sums); err != nil {
			return segment.Info{}, err
		}
	}
	slices.SortFunc(u.done, func(a, b types.CompletedPart) int { return int(aws.ToInt32(a.PartNumber) - aws.ToInt32(b.PartNumber)) })
	want := crcBase64(sums.Whole)
	out, err := b.client.CompleteMultipartUpload(ctx, &s3api.CompleteMultipartUploadInput{
		Bucket:          &b.cfg.Bucket,
		Key:             &key,
		UploadId:        created.UploadId,
		ChecksumType:    types.ChecksumTypeFullObject,
		ChecksumCRC32C:  aws.String(want),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: u.done},
	})
	if err != nil {
		// If the store completed the upload but the answer was lost, the
		// abort fails harmlessly and the new object stays: S3 offers no way
		// to tell, so this one error may leave the new version in place.
		return segment.Info{}, b.fail(op, err)
	}
	completed = true
	b.dropStale(ctx, id, token)
	if got := aws.ToString(out.ChecksumCRC32C); got != "" && got != want {
		b.discard(ctx, id, aws.ToString(out.ETag))
		return segment.Info{}, transitMismatch(op, "object", want, got)
	}
	return segment.Info{
		ID: id, Size: total, ModTime: mtime, Tier: segment.TierCold,
		Version: aws.ToString(out.ETag), Sums: sums, WrittenAt: now,
	}, nil
}

// send reads src into parts and uploads them, returning the checksums and
// length of everything read. A failure of an uploader is left in u.err.
func (u *upload) send(src io.Reader, size int64) (*segment.Checksums, int64, error) {
	b := u.b
	jobs := make(chan part)
	free := make(chan []byte, b.cfg.Concurrency+1)
	for i := 0; i < cap(free); i++ {
		free <- nil // a token; the buffer is made on first use
	}
	var wg sync.WaitGroup
	for i := 0; i < b.cfg.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				if u.ctx.Err() == nil {
					if err := u.uploadPart(p); err != nil {
						u.fail(err)
					}
				}
				free <- p.buf
			}
		}()
	}
	var sum segment.Summer
	readErr := func() error {
		for num := int32(1); ; num++ {
			var buf []byte
			select {
			case buf = <-free:
			case <-u.ctx.Done():
				return nil // an uploader failed, or the caller gave up
			}
			n := b.partSize(size, num)
			if int64(cap(buf)) < n {
				b.putBuf(buf)
				buf = b.getBuf(n)
			}
			got, err := backend.Fill(src, buf[:n])
			sum.Write(buf[:got])
			if size >= 0 && sum.Size() > size {
				free <- buf
				return invalid(u.op, "source is longer than the declared %d bytes", size)
			}
			if got > 0 {
				if num > maxParts {
					free <- buf
					return &edgeError{msg: fmt.Sprintf("s3 %s: segment too large: more than %d parts", u.op, maxParts), kinds: []error{backend.ErrTooLarge}}
				}
				select {
				case jobs <- part{num: num, buf: buf[:got]}:
				case <-u.ctx.Done():
					free <- buf
					return nil
				}
			} else {
				free <- buf
			}
			switch err {
			case nil:
			case io.EOF:
				return nil
			default:
				return fmt.Errorf("s3 %s: reading source: %w", u.op, err)
			}
		}
	}()
	close(jobs)
	wg.Wait()
	close(free)
	for buf := range free {
		b.putBuf(buf)
	}
	if readErr == nil && u.firstErr() == nil {
		if err := context.Cause(u.ctx); err != nil {
			readErr = b.fail(u.op, err)
		}
	}
	return sum.Sums(), sum.Size(), readErr
}

// uploadPart sends one part with its CRC32C, which the store verifies, and
// checks the CRC32C the store reports for what it received.
func (u *upload) uploadPart(p part) error {
	want := crcBase64(segment.CRC32C(p.buf))
	out, err := u.b.client.UploadPart(u.ctx, &s3api.UploadPartInput{
		Bucket:         &u.b.cfg.Bucket,
		Key:            &u.key,
		UploadId:       u.uploadID,
		PartNumber:     aws.Int32(p.num),
		Body:           bytes.NewReader(p.buf),
		ContentLength:  aws.Int64(int64(len(p.buf))),
		ChecksumCRC32C: aws.String(want),
	})
	if err != nil {
		if u.ctx.Err() != nil && context.Cause(u.ctx) != u.ctx.Err() {
			return nil // cancelled because another part failed first
		}
		return u.b.fail(fmt.Sprintf("%s part %d", u.op, p.num), err)
	}
	if got := aws.ToString(out.ChecksumCRC32C); got != "" && got != want {
		return transitMismatch(u.op, fmt.Sprintf("part %d", p.num), want, got)
	}
	u.mu.Lock()
	u.done = append(u.done, types.CompletedPart{
		PartNumber:     aws.Int32(p.num),
		ETag:           out.ETag,
		ChecksumCRC32C: aws.String(want),
	})
	u.mu.Unlock()
	return nil
}

// abort discards the upload's parts, even when ctx is already cancelled.
func (u *upload) abort(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	u.b.client.AbortMultipartUpload(ctx, &s3api.AbortMultipartUploadInput{
		Bucket: &u.b.cfg.Bucket, Key: &u.key, UploadId: u.uploadID,
	})
}
