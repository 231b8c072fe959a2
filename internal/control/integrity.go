package control

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// A segment's bytes cross the socket with their own end. An upload (PUT)
// and a download (GET) are both chunked bodies followed by an HTTP trailer
// holding the CRC32C of every byte of the body; the sender also names the
// length in a header when it knows it. The receiver acts on the bytes only
// once the trailer has arrived and matches: the server publishes an upload
// only then, the client reports a download complete only then. A sender
// that goes away, a request context that ends and a connection cut
// mid-body all leave the receiver with an error, never with a prefix that
// looks whole.
const (
	// headerSize is the body's length in bytes, when the sender knows it.
	headerSize = "Scribefs-Size"
	// headerVersion and headerMtime describe the version a GET serves.
	headerVersion = "Scribefs-Version"
	headerMtime   = "Scribefs-Mtime-Ns"
	// trailerCRC is the CRC32C of the whole body, 8 hex digits.
	trailerCRC = "Scribefs-Crc32c"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func newCRC() hash.Hash32 { return crc32.New(castagnoli) }

func crcString(h hash.Hash32) string { return fmt.Sprintf("%08x", h.Sum32()) }

// parseSize reads the optional length header; -1 when absent.
func parseSize(h http.Header) (int64, error) {
	v := h.Get(headerSize)
	if v == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: bad %s header %q", backend.ErrInvalid, headerSize, v)
	}
	return n, nil
}

// sendBody is an upload's body on the client side: it sums what it sends
// and, at the end of its source, puts the sum into the request's trailer,
// which the transport writes after the last chunk.
type sendBody struct {
	r       io.Reader
	crc     hash.Hash32
	trailer http.Header
}

func (b *sendBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.crc.Write(p[:n])
	if err == io.EOF {
		b.trailer.Set(trailerCRC, crcString(b.crc))
	}
	return n, err
}

// checkedBody is an upload's body on the server side. It reports io.EOF
// only after the body ended cleanly, with the length the header named and
// a trailer whose CRC32C matches every byte read; anything else ends it
// with an error, so the store fails the put and keeps what it had. When
// the length is known it checks the trailer as soon as the last byte is
// read, before handing that byte on, so a store that stops reading at the
// declared size still never sees an unchecked end.
type checkedBody struct {
	ctx     context.Context
	id      segment.ID
	r       io.Reader
	trailer http.Header
	want    int64 // -1: unknown
	n       int64
	crc     hash.Hash32
	err     error // sticky
}

func (b *checkedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if err := b.ctx.Err(); err != nil {
		b.err = fmt.Errorf("put segment %d: the request ended after %d bytes: %w", b.id, b.n, err)
		return 0, b.err
	}
	if rem := b.want - b.n; b.want >= 0 && rem < int64(len(p)) {
		p = p[:rem+1] // room for one byte too many, to notice it
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	b.crc.Write(p[:n])
	switch {
	case b.want >= 0 && b.n > b.want:
		err = fmt.Errorf("put segment %d: %w: the body is longer than the %d bytes its header names", b.id, backend.ErrInvalid, b.want)
	case err == nil && b.want >= 0 && b.n == b.want:
		// The last byte: the body must end here, with its trailer.
		var one [1]byte
		m, rerr := io.ReadFull(b.r, one[:])
		switch {
		case m > 0:
			err = fmt.Errorf("put segment %d: %w: the body is longer than the %d bytes its header names", b.id, backend.ErrInvalid, b.want)
		case rerr == io.EOF:
			err = b.end()
		default:
			err = b.cut(rerr)
		}
	case err == io.EOF:
		err = b.end()
	case err != nil:
		err = b.cut(err)
	}
	if err != nil && err != io.EOF {
		b.err = err
		// Hand on none of this read's bytes: a caller that reads exactly
		// the declared size (io.ReadFull) ignores an error that comes
		// with the bytes it asked for, and would take the body as whole.
		return 0, err
	}
	return n, err
}

// end checks a body that ended cleanly: io.EOF when it is whole.
func (b *checkedBody) end() error {
	if b.want >= 0 && b.n != b.want {
		return fmt.Errorf("put segment %d: %w: the body ended after %d of the %d bytes its header names", b.id, backend.ErrInvalid, b.n, b.want)
	}
	got := b.trailer.Get(trailerCRC)
	if got == "" {
		return fmt.Errorf("put segment %d: %w: the body ended after %d bytes without its %s trailer (the sender stopped, or is older than this mount)", b.id, backend.ErrInvalid, b.n, trailerCRC)
	}
	if len(got) != 8 || strings.Trim(got, "0123456789abcdefABCDEF") != "" {
		return fmt.Errorf("put segment %d: %w: %s trailer %q is not 8 hex digits", b.id, backend.ErrInvalid, trailerCRC, got)
	}
	if want := crcString(b.crc); !strings.EqualFold(got, want) {
		return fmt.Errorf("put segment %d: %w: the body's CRC32C is %s, its trailer says %s", b.id, segment.ErrChecksum, want, got)
	}
	return io.EOF
}

// cut describes a body that broke off: the sender's doing (it went away,
// or sent a malformed chunk), so an invalid request, not a store failure.
func (b *checkedBody) cut(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("put segment %d: %w: the sender went away after %d bytes", b.id, backend.ErrInvalid, b.n)
	}
	return fmt.Errorf("put segment %d: %w: the body broke off after %d bytes: %v", b.id, backend.ErrInvalid, b.n, err)
}

// crcWriter sums and counts what passes through it.
type crcWriter struct {
	w   io.Writer
	crc hash.Hash32
	n   int64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.crc.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// clientObject is a download on the client side: it reports io.EOF only
// once the whole version arrived with the length and the CRC32C the
// server sent.
type clientObject struct {
	resp *http.Response
	info segment.Info
	n    int64
	crc  hash.Hash32
	err  error // sticky
}

func newClientObject(id segment.ID, resp *http.Response) (*clientObject, error) {
	size, err := parseSize(resp.Header)
	if err == nil && size < 0 {
		err = fmt.Errorf("the reply names no %s", headerSize)
	}
	if err != nil {
		return nil, fmt.Errorf("get segment %d through the mount process: %w", id, err)
	}
	info := segment.Info{ID: id, Size: size, Version: resp.Header.Get(headerVersion)}
	if ns, err := strconv.ParseInt(resp.Header.Get(headerMtime), 10, 64); err == nil {
		info.ModTime = time.Unix(0, ns).UTC()
	}
	return &clientObject{resp: resp, info: info, crc: newCRC()}, nil
}

func (o *clientObject) Info() segment.Info { return o.info }
func (o *clientObject) Close() error       { return o.resp.Body.Close() }

func (o *clientObject) Read(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.resp.Body.Read(p)
	o.n += int64(n)
	o.crc.Write(p[:n])
	id := o.info.ID
	switch {
	case o.n > o.info.Size:
		err = fmt.Errorf("get segment %d through the mount process: more than the %d bytes announced", id, o.info.Size)
	case err == io.EOF && o.n != o.info.Size:
		err = fmt.Errorf("get segment %d through the mount process: %d of %d bytes arrived", id, o.n, o.info.Size)
	case err == io.EOF:
		got := o.resp.Trailer.Get(trailerCRC)
		if want := crcString(o.crc); !strings.EqualFold(got, want) {
			if got == "" {
				err = fmt.Errorf("get segment %d through the mount process: the reply ended without its %s trailer", id, trailerCRC)
			} else {
				err = fmt.Errorf("get segment %d through the mount process: %w: CRC32C %s, the server sent %s", id, segment.ErrChecksum, want, got)
			}
		}
	case err != nil:
		err = fmt.Errorf("get segment %d through the mount process: the reply was cut after %d of %d bytes: %w", id, o.n, o.info.Size, err)
	}
	if err != nil && err != io.EOF {
		o.err = err
	}
	return n, err
}
