package compress

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// Backend stores segments compressed in the inner backend it embeds; see
// the package documentation for the format and the costs.
type Backend struct {
	backend.Backend
	cfg Config
	enc *zstd.Encoder // concurrency-safe through EncodeAll
	dec *zstd.Decoder // concurrency-safe through DecodeAll
	// layouts maps a version of a segment to its parsed index, or to nil
	// for a version known to be plain.
	layouts *lru.Cache[versionKey, *layout]
	flw     sync.Pool // *flate.Writer
	blocks  sync.Pool // *[]byte of segment.BlockSize
}

type versionKey struct {
	id      segment.ID
	version string
}

var _ backend.Backend = (*Backend)(nil)

// New wraps inner. Closing the wrapper closes inner.
func New(inner backend.Backend, cfg Config) (*Backend, error) {
	cfg = cfg.withDefaults()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("compress: zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(cfg.InFlight), zstd.WithDecoderMaxMemory(4*segment.BlockSize))
	if err != nil {
		return nil, fmt.Errorf("compress: zstd decoder: %w", err)
	}
	cache, err := lru.New[versionKey, *layout](cfg.IndexCache)
	if err != nil {
		return nil, fmt.Errorf("compress: index cache: %w", err)
	}
	b := &Backend{Backend: inner, cfg: cfg, enc: enc, dec: dec, layouts: cache}
	b.blocks.New = func() any { s := make([]byte, segment.BlockSize); return &s }
	return b, nil
}

// Unwrap returns the inner backend.
func (b *Backend) Unwrap() backend.Backend { return b.Backend }

// Close releases the codecs and closes the inner backend.
func (b *Backend) Close() error {
	b.enc.Close()
	b.dec.Close()
	return b.Backend.Close()
}

// errInnerDone unblocks a Put's frame writer once the inner Put has returned.
var errInnerDone = errors.New("inner put returned")

// pipeError marks a failure to hand frames to the inner Put, whose own
// error is the one to report.
type pipeError struct{ err error }

func (e *pipeError) Error() string { return e.err.Error() }

// Put compresses r block by block into the inner backend (in Mode None it
// passes through). Size and Sums in opts count the original bytes.
func (b *Backend) Put(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions) (segment.Info, error) {
	if b.cfg.Mode == None {
		return b.Backend.Put(ctx, id, r, opts)
	}
	pr, pw := io.Pipe()
	type result struct {
		info segment.Info
		err  error
	}
	done := make(chan result, 1)
	go func() {
		info, err := b.Backend.Put(ctx, id, pr, backend.PutOptions{Size: -1, ModTime: opts.ModTime, Compression: b.compression()})
		pr.CloseWithError(errInnerDone)
		done <- result{info, err}
	}()
	l, err := b.writeObject(id, r, pw, opts)
	if err != nil {
		pw.CloseWithError(err)
	} else {
		pw.Close()
	}
	res := <-done
	var pe *pipeError
	switch {
	case err != nil && errors.As(err, &pe) && res.err != nil:
		return segment.Info{}, res.err
	case err != nil:
		if res.err == nil { // cannot happen: the inner Put saw an error, not EOF
			b.Backend.Delete(ctx, id, res.info.Version)
		}
		return segment.Info{}, err
	case res.err != nil:
		return segment.Info{}, res.err
	}
	info := res.info
	info.ID = id
	info.StoredSize, info.Size = info.Size, l.size
	info.Compression = l.compression()
	info.Sums = l.sums()
	if info.Version != "" {
		b.layouts.Add(versionKey{id, info.Version}, l)
	}
	return info, nil
}

// compression is what Stat will report for the objects Put writes.
func (b *Backend) compression() string {
	if b.cfg.Mode == Gzip {
		return CompressionGzip
	}
	return CompressionZstd
}

// job is one block being compressed.
type job struct {
	raw  *[]byte
	out  []byte
	err  error
	done chan struct{}
}

// writeObject reads r in blocks, compresses up to cfg.InFlight of them at
// once, and writes the frames in order to w, then the trailer. It checks
// opts.Size and opts.Sums against the original bytes before the trailer is
// written, so a mismatch never yields a complete object.
func (b *Backend) writeObject(id segment.ID, r io.Reader, w io.Writer, opts backend.PutOptions) (*layout, error) {
	codec := byte(codecZstd)
	if b.cfg.Mode == Gzip {
		codec = codecGzip
	}
	var (
		sum     segment.Summer
		ieee    uint32 // gzip's CRC32 of the original bytes
		lens    []int64
		written int64
		queue   []*job
		eof     bool
	)
	defer func() { // let in-flight jobs finish before their buffers go back
		for _, j := range queue {
			<-j.done
			b.blocks.Put(j.raw)
		}
	}()
	if codec == codecGzip {
		if _, err := w.Write(singleHeader); err != nil {
			return nil, &pipeError{err}
		}
		written = int64(len(singleHeader))
	}
	flushOne := func() error {
		j := queue[0]
		queue = queue[1:]
		<-j.done
		b.blocks.Put(j.raw)
		if j.err != nil {
			return fmt.Errorf("compress segment %d: %w", id, j.err)
		}
		if _, err := w.Write(j.out); err != nil {
			return &pipeError{err}
		}
		lens = append(lens, int64(len(j.out)))
		written += int64(len(j.out))
		return nil
	}
	for !eof || len(queue) > 0 {
		if eof || len(queue) == b.cfg.InFlight {
			if err := flushOne(); err != nil {
				return nil, err
			}
			continue
		}
		raw := b.blocks.Get().(*[]byte)
		n, err := backend.Fill(r, *raw)
		switch {
		case err == io.EOF:
			eof = true
		case err != nil:
			b.blocks.Put(raw)
			return nil, fmt.Errorf("put segment %d: read source: %w", id, err)
		}
		if n == 0 {
			b.blocks.Put(raw)
			continue
		}
		sum.Write((*raw)[:n])
		if codec == codecGzip {
			ieee = crc32.Update(ieee, crc32.IEEETable, (*raw)[:n])
		}
		if opts.Size >= 0 && sum.Size() > opts.Size {
			b.blocks.Put(raw)
			return nil, fmt.Errorf("put segment %d: source longer than the declared %d bytes: %w", id, opts.Size, backend.ErrInvalid)
		}
		j := &job{raw: raw, done: make(chan struct{})}
		queue = append(queue, j)
		go func(data []byte) {
			defer close(j.done)
			j.out, j.err = b.encode(codec, data)
		}((*raw)[:n])
	}
	size := sum.Size()
	if opts.Size >= 0 && size != opts.Size {
		return nil, fmt.Errorf("put segment %d: source yielded %d bytes, declared %d: %w", id, size, opts.Size, backend.ErrInvalid)
	}
	sums := sum.Sums()
	if opts.Sums != nil && (opts.Sums.Whole != sums.Whole || len(opts.Sums.Blocks) > 0 && !opts.Sums.Equal(sums)) {
		return nil, fmt.Errorf("put segment %d: bytes are %s, caller computed %s: %w", id, sums, opts.Sums, segment.ErrChecksum)
	}
	tr := trailer(codec, written, size, sums.Whole, lens, sums.Blocks)
	if codec == codecGzip {
		tr = trailerSingle(written, size, sums.Whole, ieee, lens, sums.Blocks)
	}
	if _, err := w.Write(tr); err != nil {
		return nil, &pipeError{err}
	}
	l := &layout{codec: codec, size: size, blockSize: segment.BlockSize, whole: sums.Whole,
		offs: make([]int64, len(lens)+1), crcs: sums.Blocks, single: codec == codecGzip}
	if l.single {
		l.offs[0] = int64(len(singleHeader))
	}
	for i, n := range lens {
		l.offs[i+1] = l.offs[i] + n
	}
	return l, nil
}

// encode compresses one block into a frame of its own. A gzip frame is
// the deflate of the block by a fresh compressor (level 6, as upstream's
// GzEncoder), ended by a sync flush: no back-reference reaches before the
// block and the frame ends byte-aligned, which is a full flush of the one
// deflate stream the frames make together, so decoding can start at any
// frame.
func (b *Backend) encode(codec byte, data []byte) ([]byte, error) {
	if codec == codecZstd {
		return b.enc.EncodeAll(data, make([]byte, 0, len(data)/2)), nil
	}
	var buf bytes.Buffer
	buf.Grow(len(data) / 2)
	fw, _ := b.flw.Get().(*flate.Writer)
	if fw == nil {
		fw, _ = flate.NewWriter(&buf, flate.DefaultCompression)
	} else {
		fw.Reset(&buf)
	}
	defer b.flw.Put(fw)
	if _, err := fw.Write(data); err != nil {
		return nil, err
	}
	if err := fw.Flush(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decode expands one frame of block i of l into dst.
func (b *Backend) decode(l *layout, i int64, frame, dst []byte) ([]byte, error) {
	want := l.blockLen(i)
	var out []byte
	var err error
	if l.codec == codecZstd {
		out, err = b.dec.DecodeAll(frame, dst[:0])
	} else if l.single {
		fr := flate.NewReader(io.MultiReader(bytes.NewReader(frame), bytes.NewReader(finalBlock)))
		buf := bytes.NewBuffer(dst[:0])
		_, err = io.Copy(buf, io.LimitReader(fr, want+1))
		out = buf.Bytes()
	} else {
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(frame)); err == nil {
			zr.Multistream(false)
			buf := bytes.NewBuffer(dst[:0])
			_, err = io.Copy(buf, io.LimitReader(zr, want+1))
			out = buf.Bytes()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w at offset %d: frame does not decode: %v", segment.ErrChecksum, i*l.blockSize, err)
	}
	if int64(len(out)) != want {
		return nil, fmt.Errorf("%w at offset %d: frame decodes to %d bytes, want %d", segment.ErrChecksum, i*l.blockSize, len(out), want)
	}
	if got := segment.CRC32C(out); got != l.crcs[i] {
		return nil, fmt.Errorf("%w at offset %d: crc32c %08x, recorded %08x", segment.ErrChecksum, i*l.blockSize, got, l.crcs[i])
	}
	return out, nil
}

// Stat returns the segment's Info; for a compressed object, Size and Sums
// are those of the original bytes and StoredSize the object's.
func (b *Backend) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	info, err := b.Backend.Stat(ctx, id)
	if err != nil || info.Compression != "" {
		return info, err
	}
	l, err := b.layoutOf(ctx, info)
	if err != nil || l == nil {
		return info, err
	}
	return resolved(info, l), nil
}

func resolved(info segment.Info, l *layout) segment.Info {
	info.StoredSize, info.Size = info.Size, l.size
	info.Compression = l.compression()
	info.Sums = l.sums()
	info.Unresolved = false
	return info
}

// layoutOf returns the parsed index of the object inner Stat described, or
// nil when it is plain, reading the object's tail unless the cache knows.
func (b *Backend) layoutOf(ctx context.Context, info segment.Info) (*layout, error) {
	key := versionKey{info.ID, info.Version}
	if info.Version != "" {
		if l, ok := b.layouts.Get(key); ok {
			return l, nil
		}
	}
	l, err := b.readLayout(ctx, info)
	if err == nil && info.Version != "" {
		b.layouts.Add(key, l)
	}
	return l, err
}

func (b *Backend) readLayout(ctx context.Context, info segment.Info) (*layout, error) {
	stored := info.Size
	if stored < footerLen+zstdSkippableHdr {
		return nil, nil
	}
	tailOff := max(0, stored-tailProbe)
	tail, err := b.readRange(ctx, info, tailOff, stored-tailOff)
	if err != nil {
		return nil, err
	}
	f, ok, err := findFooter(tail)
	if !ok {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("segment %d: %w", info.ID, err)
	}
	off, end, err := f.indexRegion(stored)
	if err != nil {
		return nil, fmt.Errorf("segment %d: %w", info.ID, err)
	}
	var region []byte
	if off >= tailOff {
		region = tail[off-tailOff : end-tailOff]
	} else if region, err = b.readRange(ctx, info, off, end-off); err != nil {
		return nil, err
	}
	l, err := parseIndex(f, region)
	if err != nil {
		return nil, fmt.Errorf("segment %d: %w", info.ID, err)
	}
	return l, nil
}

// readRange reads stored bytes [off, off+n) of the version info names.
func (b *Backend) readRange(ctx context.Context, info segment.Info, off, n int64) ([]byte, error) {
	r, err := b.Backend.Get(ctx, info.ID, backend.GetOptions{Offset: off, Length: n, Version: info.Version})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("segment %d: object ended before offset %d: %w", info.ID, off+n, backend.ErrUnavailable)
		}
		return nil, err
	}
	return buf, nil
}

// List reports the inner listing, resolving what the index cache knows and
// marking the rest Unresolved: a listed size may be a compressed one.
func (b *Backend) List(ctx context.Context, fn func(segment.Info) error) error {
	return b.Backend.List(ctx, func(info segment.Info) error {
		// Whatever this store's Mode, a listed object may have been
		// written compressed by a host that compresses (a size that is
		// the stored one), so every entry the cache cannot resolve is
		// marked Unresolved: the tier then learns its true size and its
		// checksums with one Stat per version. Objects too small to hold
		// a footer are plain, but their Stat also says whether they carry
		// a checksum (scribefs stat's "checked").
		if info.Unresolved || info.Compression != "" {
			return fn(info)
		}
		if info.Version != "" && info.Size >= footerLen+zstdSkippableHdr {
			if l, ok := b.layouts.Peek(versionKey{info.ID, info.Version}); ok && l != nil {
				return fn(resolved(info, l))
			}
		}
		info.Unresolved = true
		return fn(info)
	})
}

// Get returns the original bytes of the range. Objects in this package's
// format are read through their index: one ranged GET of exactly the frames
// the range covers. Plain objects and upstream encodings pass through.
func (b *Backend) Get(ctx context.Context, id segment.ID, opts backend.GetOptions) (io.ReadCloser, error) {
	if opts.Compression != "" && opts.Compression != CompressionZstd && opts.Compression != CompressionGzip {
		return b.Backend.Get(ctx, id, opts)
	}
	var l *layout
	var ok bool
	version := opts.Version
	if version != "" {
		l, ok = b.layouts.Get(versionKey{id, version})
	}
	if !ok && version != "" && opts.Compression == "" && opts.Offset == 0 && opts.Length < 0 {
		if r, done, err := b.getWholeSmall(ctx, id, opts); done {
			return r, err
		}
	}
	if !ok {
		info, err := b.Backend.Stat(ctx, id)
		if err != nil {
			return nil, err
		}
		if opts.Version != "" && info.Version != opts.Version {
			return nil, fmt.Errorf("get segment %d: version %s, asked for %s: %w", id, info.Version, opts.Version, backend.ErrStale)
		}
		if info.Compression != "" { // upstream, which the caller did not say
			opts.Compression = info.Compression
			return b.Backend.Get(ctx, id, opts)
		}
		if l, err = b.layoutOf(ctx, info); err != nil {
			return nil, err
		}
		version = info.Version
	}
	if l == nil {
		opts.Compression = ""
		opts.Version = version
		return b.Backend.Get(ctx, id, opts)
	}
	start := min(max(opts.Offset, 0), l.size)
	end := l.size
	if opts.Length >= 0 {
		end = min(start+opts.Length, l.size)
	}
	if start >= end {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	lo, hi := start/l.blockSize, (end-1)/l.blockSize
	rawOff, rawEnd := l.offs[lo], l.offs[hi+1]
	// A whole read of a single-member gzip object also reads and checks
	// what only other decoders rely on: the member's header and its close
	// (final block, CRC32, ISIZE). A node reading the object whole fails
	// on a damaged one, so scribefs's whole reads (and verify) must too.
	gz := l.single && start == 0 && end == l.size
	if gz {
		rawOff, rawEnd = 0, rawEnd+singleClose
	}
	raw, err := b.Backend.Get(ctx, id, backend.GetOptions{Offset: rawOff, Length: rawEnd - rawOff, Version: version})
	if err != nil {
		return nil, err
	}
	return &blockReader{b: b, l: l, id: id, raw: raw, next: lo, skip: start - lo*l.blockSize, left: end - start, gz: gz}, nil
}

// smallWhole is the largest object getWholeSmall reads into memory.
const smallWhole = 8 << 20

// getWholeSmall answers a whole read of a version whose format is not known
// yet with one GET instead of a HEAD, a footer probe and then the GET: it
// reads the object (if it is at most smallWhole bytes) and looks for the
// footer in memory. An object in this package's format is decoded, with each
// block's checksum checked; any other is returned as read. done is false
// when the object is too large to hold, and the caller takes the usual path.
func (b *Backend) getWholeSmall(ctx context.Context, id segment.ID, opts backend.GetOptions) (r io.ReadCloser, done bool, err error) {
	raw, err := b.Backend.Get(ctx, id, opts)
	if err != nil {
		return nil, true, err
	}
	defer raw.Close()
	buf, err := io.ReadAll(io.LimitReader(raw, smallWhole+1))
	if err != nil {
		return nil, true, err
	}
	if len(buf) > smallWhole {
		return nil, false, nil
	}
	key := versionKey{id, opts.Version}
	stored := int64(len(buf))
	if stored < footerLen+zstdSkippableHdr {
		b.layouts.Add(key, nil)
		return io.NopCloser(bytes.NewReader(buf)), true, nil
	}
	tail := buf[max(0, stored-tailProbe):]
	f, ok, err := findFooter(tail)
	if !ok {
		b.layouts.Add(key, nil)
		return io.NopCloser(bytes.NewReader(buf)), true, nil
	}
	if err != nil {
		return nil, true, fmt.Errorf("segment %d: %w", id, err)
	}
	off, end, err := f.indexRegion(stored)
	if err != nil {
		return nil, true, fmt.Errorf("segment %d: %w", id, err)
	}
	l, err := parseIndex(f, buf[off:end])
	if err != nil {
		return nil, true, fmt.Errorf("segment %d: %w", id, err)
	}
	b.layouts.Add(key, l)
	if l.size == 0 {
		return io.NopCloser(bytes.NewReader(nil)), true, nil
	}
	n := int64(len(l.offs)) - 1
	if l.single && n > 0 {
		// From the member's header to its close: checked as in Get.
		frames := io.NopCloser(bytes.NewReader(buf[:l.offs[n]+singleClose]))
		return &blockReader{b: b, l: l, id: id, raw: frames, next: 0, left: l.size, gz: true}, true, nil
	}
	frames := io.NopCloser(bytes.NewReader(buf[l.offs[0]:l.offs[n]]))
	return &blockReader{b: b, l: l, id: id, raw: frames, next: 0, left: l.size}, true, nil
}

// blockReader decodes frames from a ranged GET one block at a time, so it
// holds at most one frame and one block.
type blockReader struct {
	b     *Backend
	l     *layout
	id    segment.ID
	raw   io.ReadCloser
	next  int64 // block to decode next
	skip  int64 // bytes to drop from the next block
	left  int64 // bytes still to serve
	cur   []byte
	frame []byte
	block []byte
	err   error
	// gz: a whole read of a single-member gzip object, which checks the
	// member's header and close; ieee is gzip's CRC32 of the bytes so far.
	gz   bool
	ieee uint32
}

func (r *blockReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.left == 0 {
			return 0, io.EOF
		}
		if r.err = r.fill(); r.err != nil {
			return 0, r.err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (r *blockReader) fill() error {
	i := r.next
	if r.gz && i == 0 {
		hdr := make([]byte, len(singleHeader))
		if _, err := io.ReadFull(r.raw, hdr); err != nil {
			return fmt.Errorf("get segment %d: object ended inside its gzip header: %w", r.id, backend.ErrUnavailable)
		}
		if !bytes.Equal(hdr, singleHeader) {
			return fmt.Errorf("get segment %d: %w: the gzip member's header is damaged (% x)", r.id, segment.ErrChecksum, hdr)
		}
	}
	n := r.l.offs[i+1] - r.l.offs[i]
	if int64(cap(r.frame)) < n {
		r.frame = make([]byte, n)
	}
	frame := r.frame[:n]
	if _, err := io.ReadFull(r.raw, frame); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("get segment %d: object ended inside block %d: %w", r.id, i, backend.ErrUnavailable)
		}
		return err
	}
	if r.block == nil {
		r.block = make([]byte, 0, r.l.blockSize)
	}
	out, err := r.b.decode(r.l, i, frame, r.block)
	if err != nil {
		return fmt.Errorf("get segment %d: %w", r.id, err)
	}
	r.block = out[:0]
	if r.gz {
		r.ieee = crc32.Update(r.ieee, crc32.IEEETable, out)
		if i == int64(len(r.l.crcs))-1 {
			if err := r.checkClose(); err != nil {
				return err
			}
		}
	}
	out = out[r.skip:]
	r.skip = 0
	out = out[:min(int64(len(out)), r.left)]
	r.left -= int64(len(out))
	r.next++
	r.cur = out
	return nil
}

// checkClose reads the close of the gzip member after the last block and
// checks it: an empty final block, the CRC32 and the length of every byte.
func (r *blockReader) checkClose() error {
	end := make([]byte, singleClose)
	if _, err := io.ReadFull(r.raw, end); err != nil {
		return fmt.Errorf("get segment %d: object ended inside its gzip close: %w", r.id, backend.ErrUnavailable)
	}
	crc, isize := binary.LittleEndian.Uint32(end[5:]), binary.LittleEndian.Uint32(end[9:])
	if !bytes.Equal(end[:5], finalBlock) || crc != r.ieee || isize != uint32(r.l.size) {
		return fmt.Errorf("get segment %d: %w: the gzip member's close is damaged (final block % x, CRC32 %08x want %08x, ISIZE %d want %d)",
			r.id, segment.ErrChecksum, end[:5], crc, r.ieee, isize, uint32(r.l.size))
	}
	return nil
}

func (r *blockReader) Close() error { return r.raw.Close() }
