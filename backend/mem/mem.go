// Package mem is an in-memory backend.Backend: the cold tier of fast unit
// tests of the tiered store, where the tests need thousands of objects and
// hooks, and the conformance suite's reference for what the contract means.
//
// Versions are numbers from one counter, never reused, as S3 ETags of
// different bytes differ. It must not be used to store anything that has to
// survive the process.
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

// Backend holds segments in a map. The zero value is not usable: call New.
type Backend struct {
	// mu guards objects and next.
	mu      sync.Mutex
	objects map[segment.ID]object
	next    uint64
	tier    segment.Tier
}

type object struct {
	data    []byte
	info    segment.Info
	version uint64
}

var _ backend.Backend = (*Backend)(nil)

// New returns an empty backend whose Infos report tier.
func New(tier segment.Tier) *Backend {
	return &Backend{objects: map[segment.ID]object{}, tier: tier}
}

func errFor(op string, id segment.ID, err error) error {
	return fmt.Errorf("mem %s segment %d: %w", op, id, err)
}

// Put implements backend.Backend.
func (b *Backend) Put(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions) (segment.Info, error) {
	data, err := io.ReadAll(r)
	if err != nil {
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
	mtime := opts.ModTime
	if mtime.IsZero() {
		mtime = now
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	info := segment.Info{ID: id, Size: int64(len(data)), ModTime: mtime, Tier: b.tier,
		Version: strconv.FormatUint(b.next, 10), Sums: sums, WrittenAt: now}
	b.objects[id] = object{data: data, info: info, version: b.next}
	return info, nil
}

// Get implements backend.Backend.
func (b *Backend) Get(ctx context.Context, id segment.ID, opts backend.GetOptions) (io.ReadCloser, error) {
	b.mu.Lock()
	o, ok := b.objects[id]
	b.mu.Unlock()
	switch {
	case !ok:
		return nil, errFor("get", id, backend.ErrNotFound)
	case opts.Version != "" && opts.Version != o.info.Version:
		return nil, errFor("get", id, backend.ErrStale)
	}
	off := min(max(opts.Offset, 0), int64(len(o.data)))
	end := int64(len(o.data))
	if opts.Length >= 0 && off+opts.Length < end {
		end = off + opts.Length
	}
	return io.NopCloser(bytes.NewReader(o.data[off:end])), nil
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
	return nil
}

// List implements backend.Backend. It reports the bucket as it was when
// the listing began (a snapshot), as a listing whose pages were fetched
// before later changes would; fn runs without the lock held.
func (b *Backend) List(ctx context.Context, fn func(segment.Info) error) error {
	b.mu.Lock()
	infos := make([]segment.Info, 0, len(b.objects))
	for _, o := range b.objects {
		info := o.info
		info.Sums = nil // a listing carries no checksums
		infos = append(infos, info)
	}
	b.mu.Unlock()
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
