// Package mem is an in-memory store of segments: a backend.Backend for the
// cold tier of fast unit tests (thousands of objects, hooks around every
// call), and, with its Index, a hot tier the tiered store can run on
// (tier.Hot and tier.Index) without the fsyncs of a bbolt file. Both run
// through the same conformance suites as the real tiers.
//
// Versions are numbers from one counter, never reused, as generations of
// the bbolt tier and ETags of different bytes are. Nothing survives the
// process; a "restart" in a test is a new tier.Store over the same Backend.
package mem

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// Backend holds segments in maps. The zero value is not usable: call New.
type Backend struct {
	tier segment.Tier

	// mu guards everything below.
	mu      sync.Mutex
	next    uint64                // the last version handed out
	objects map[segment.ID]object // the current version of each segment
	pins    map[string]*pin       // pinned versions (the current or older ones)

	// The index of the cold tier and the records' change numbers, as a hot
	// tier keeps them (see Index).
	cold       map[segment.ID]segment.Info
	tombs      map[segment.ID]string
	uploading  map[segment.ID]bool
	changes    map[segment.ID]uint64
	deleted    map[segment.ID]bool
	counter    uint64
	reconciled time.Time
}

type object struct {
	data []byte // never modified once stored
	info segment.Info
}

type pin struct {
	data []byte
	n    int
}

var _ backend.Backend = (*Backend)(nil)

// New returns an empty backend whose Infos report tier.
func New(tier segment.Tier) *Backend {
	return &Backend{tier: tier, objects: map[segment.ID]object{}, pins: map[string]*pin{},
		cold: map[segment.ID]segment.Info{}, tombs: map[segment.ID]string{}, uploading: map[segment.ID]bool{},
		changes: map[segment.ID]uint64{}, deleted: map[segment.ID]bool{}}
}

func errFor(op string, id segment.ID, err error) error {
	return fmt.Errorf("mem %s segment %d: %w", op, id, err)
}

// changed gives id's record a new change number; the caller holds mu.
func (b *Backend) changed(id segment.ID) {
	b.counter++
	b.changes[id] = b.counter
	_, hot := b.objects[id]
	_, cold := b.cold[id]
	_, tomb := b.tombs[id]
	if !hot && !cold && !tomb && !b.uploading[id] {
		b.deleted[id] = true
	} else {
		delete(b.deleted, id)
	}
}

// Put implements backend.Backend.
func (b *Backend) Put(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions) (segment.Info, error) {
	return b.put(ctx, id, r, opts, nil, nil)
}

// PutIf is Put that stores the new version only if check accepts the
// segment's record at that moment (see tier.Hot).
func (b *Backend) PutIf(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions, check func(backend.Record) error) (segment.Info, error) {
	return b.put(ctx, id, r, opts, nil, check)
}

// PutStream is Put for bytes still being produced; mtime is asked for once
// r returned EOF.
func (b *Backend) PutStream(ctx context.Context, id segment.ID, r io.Reader, mtime func() time.Time) (segment.Info, error) {
	return b.put(ctx, id, r, backend.PutOptions{Size: -1}, mtime, nil)
}

func (b *Backend) put(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions, mtime func() time.Time, check func(backend.Record) error) (segment.Info, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return segment.Info{}, errFor("put", id, err)
	}
	if err := ctx.Err(); err != nil {
		return segment.Info{}, errFor("put", id, err)
	}
	if opts.Size >= 0 && int64(len(data)) != opts.Size {
		return segment.Info{}, errFor("put", id, fmt.Errorf("%w: %d bytes, expected %d", backend.ErrInvalid, len(data), opts.Size))
	}
	sums := segment.Sum(data)
	if opts.Sums != nil && !opts.Sums.Equal(sums) {
		return segment.Info{}, errFor("put", id, segment.ErrChecksum)
	}
	now := time.Now().UTC()
	mt := opts.ModTime
	if mtime != nil {
		mt = mtime()
	}
	if mt.IsZero() {
		mt = now
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if check != nil {
		if err := check(b.record(id)); err != nil {
			return segment.Info{}, err
		}
	}
	b.next++
	info := segment.Info{ID: id, Size: int64(len(data)), ModTime: mt.UTC(), Tier: b.tier,
		Version: strconv.FormatUint(b.next, 10), Sums: sums, WrittenAt: now}
	b.objects[id] = object{data: data, info: info}
	b.changed(id)
	return info, nil
}

// Get implements backend.Backend. A version that is no longer current is
// still readable while it is pinned.
func (b *Backend) Get(ctx context.Context, id segment.ID, opts backend.GetOptions) (io.ReadCloser, error) {
	b.mu.Lock()
	o, ok := b.objects[id]
	var data []byte
	switch {
	case opts.Version != "" && (!ok || o.info.Version != opts.Version):
		p := b.pins[opts.Version]
		if p == nil {
			b.mu.Unlock()
			if !ok {
				return nil, errFor("get", id, backend.ErrNotFound)
			}
			return nil, errFor("get", id, backend.ErrStale)
		}
		data = p.data
	case !ok:
		b.mu.Unlock()
		return nil, errFor("get", id, backend.ErrNotFound)
	default:
		data = o.data
	}
	b.mu.Unlock()
	off := min(max(opts.Offset, 0), int64(len(data)))
	end := int64(len(data))
	if opts.Length >= 0 && off+opts.Length < end {
		end = off + opts.Length
	}
	return io.NopCloser(bytes.NewReader(data[off:end])), nil
}

// Stat implements backend.Backend.
func (b *Backend) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[id]
	if !ok {
		return segment.Info{}, errFor("stat", id, backend.ErrNotFound)
	}
	return o.info, nil
}

// Delete implements backend.Backend.
func (b *Backend) Delete(ctx context.Context, id segment.ID, ifVersion string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[id]
	switch {
	case !ok:
		return errFor("delete", id, backend.ErrNotFound)
	case ifVersion != "" && ifVersion != o.info.Version:
		return errFor("delete", id, backend.ErrStale)
	}
	delete(b.objects, id)
	b.changed(id)
	return nil
}

// Rename moves segment from to id to, replacing to.
func (b *Backend) Rename(ctx context.Context, from, to segment.ID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[from]
	if !ok {
		return errFor("rename", from, backend.ErrNotFound)
	}
	if from == to {
		return nil
	}
	o.info.ID = to
	b.objects[to] = o
	delete(b.objects, from)
	b.changed(from)
	b.changed(to)
	return nil
}

// List implements backend.Backend. It reports the store as it was when the
// listing began (a snapshot), as a listing whose pages were fetched before
// later changes would; fn runs without the lock held.
func (b *Backend) List(ctx context.Context, fn func(segment.Info) error) error {
	b.mu.Lock()
	infos := make([]segment.Info, 0, len(b.objects))
	for _, o := range b.objects {
		info := o.info
		info.Sums = nil // a listing carries no checksums
		infos = append(infos, info)
	}
	b.mu.Unlock()
	return emit(ctx, infos, fn)
}

func emit(ctx context.Context, infos []segment.Info, fn func(segment.Info) error) error {
	slices.SortFunc(infos, func(a, b segment.Info) int { return cmp.Compare(a.ID, b.ID) })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// PinCurrent pins the current version of a segment: its bytes stay
// readable through ReadAt until release.
func (b *Backend) PinCurrent(id segment.ID) (segment.Info, func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[id]
	if !ok {
		return segment.Info{}, nil, errFor("pin", id, backend.ErrNotFound)
	}
	v := o.info.Version
	p := b.pins[v]
	if p == nil {
		p = &pin{data: o.data}
		b.pins[v] = p
	}
	p.n++
	return o.info, sync.OnceFunc(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if p.n--; p.n == 0 {
			delete(b.pins, v)
		}
	}), nil
}

// ReadAt reads from a pinned version.
func (b *Backend) ReadAt(version string, p []byte, off int64) (int, error) {
	b.mu.Lock()
	pn := b.pins[version]
	b.mu.Unlock()
	if pn == nil {
		return 0, backend.ErrStale
	}
	if off >= int64(len(pn.data)) {
		return 0, io.EOF
	}
	n := copy(p, pn.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Usage is the bytes of current versions.
func (b *Backend) Usage() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	for _, o := range b.objects {
		n += int64(len(o.data))
	}
	return n
}

// Space reports a large, empty disk: memory is not a disk.
func (b *Backend) Space() (total, free uint64, err error) { return 1 << 40, 1 << 40, nil }

// Close implements backend.Backend.
func (b *Backend) Close() error { return nil }

// Objects returns a copy of every stored segment's bytes (tests compare
// them with what they expect the bucket to hold).
func (b *Backend) Objects() map[segment.ID][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[segment.ID][]byte, len(b.objects))
	for id, o := range b.objects {
		out[id] = bytes.Clone(o.data)
	}
	return out
}
