package mem

import (
	"context"
	"fmt"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// Index is the backend's record of the cold tier and of every segment's
// change number, kept as backend/local keeps them in its file, so the
// tiered store can use a mem Backend as its hot tier (tier.Index).
type Index struct{ b *Backend }

// Index returns the backend's index.
func (b *Backend) Index() *Index { return &Index{b: b} }

func clone(i segment.Info) *segment.Info { return &i }

// record reads id's record; the caller holds mu.
func (b *Backend) record(id segment.ID) backend.Record {
	rec := backend.Record{ID: id, Change: b.changes[id]}
	if o, ok := b.objects[id]; ok {
		rec.Hot = clone(o.info)
	}
	if c, ok := b.cold[id]; ok {
		rec.Cold = clone(c)
	}
	if t, ok := b.tombs[id]; ok {
		rec.Tomb = &t
	}
	rec.Uploading = b.uploading[id]
	return rec
}

// Record returns id's record.
func (x *Index) Record(id segment.ID) (backend.Record, error) {
	x.b.mu.Lock()
	defer x.b.mu.Unlock()
	return x.b.record(id), nil
}

// Counter returns the change counter.
func (x *Index) Counter() (uint64, error) {
	x.b.mu.Lock()
	defer x.b.mu.Unlock()
	return x.b.counter, nil
}

// Update is one transition of the records of ids, atomic under the lock;
// see tier.Index and backend/local's Index.Update, whose rules it follows.
func (x *Index) Update(ids []segment.ID, fn func(recs []*backend.Record) error) ([]backend.Record, error) {
	b := x.b
	b.mu.Lock()
	defer b.mu.Unlock()
	before := make([]backend.Record, len(ids))
	recs := make([]*backend.Record, len(ids))
	data := map[string][]byte{}
	for i, id := range ids {
		before[i] = b.record(id)
		cp := before[i]
		if cp.Hot != nil {
			cp.Hot = clone(*cp.Hot)
			data[cp.Hot.Version] = b.objects[id].data
		}
		if cp.Cold != nil {
			cp.Cold = clone(*cp.Cold)
		}
		if cp.Tomb != nil {
			t := *cp.Tomb
			cp.Tomb = &t
		}
		recs[i] = &cp
	}
	if err := fn(recs); err != nil {
		return nil, fmt.Errorf("update segment %d: %w", ids[0], err)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Hot == nil {
			continue
		}
		if _, ok := data[r.Hot.Version]; !ok || seen[r.Hot.Version] {
			return nil, fmt.Errorf("update segment %d: %w: hot version %s", r.ID, backend.ErrInvalid, r.Hot.Version)
		}
		seen[r.Hot.Version] = true
	}
	for i, r := range recs {
		old := before[i]
		dirty := false
		switch {
		case r.Hot == nil && old.Hot != nil:
			delete(b.objects, r.ID)
			dirty = true
		case r.Hot != nil && (old.Hot == nil || !sameHot(*old.Hot, *r.Hot)):
			info := *r.Hot
			info.ID = r.ID
			b.objects[r.ID] = object{data: data[info.Version], info: info}
			dirty = true
		}
		switch {
		case r.Cold == nil && old.Cold != nil:
			delete(b.cold, r.ID)
			dirty = true
		case r.Cold != nil && (old.Cold == nil || !sameCold(*old.Cold, *r.Cold)):
			b.cold[r.ID] = *r.Cold
			dirty = true
		}
		switch {
		case r.Tomb == nil && old.Tomb != nil:
			delete(b.tombs, r.ID)
			dirty = true
		case r.Tomb != nil && (old.Tomb == nil || *old.Tomb != *r.Tomb):
			b.tombs[r.ID] = *r.Tomb
			dirty = true
		}
		if r.Uploading != old.Uploading {
			if r.Uploading {
				b.uploading[r.ID] = true
			} else {
				delete(b.uploading, r.ID)
			}
			dirty = true
		}
		if dirty || r.Touch {
			b.changed(r.ID)
		}
	}
	out := make([]backend.Record, len(ids))
	for i, id := range ids {
		out[i] = b.record(id)
	}
	return out, nil
}

func sameHot(a, b segment.Info) bool {
	return a.Version == b.Version && a.Size == b.Size && a.ModTime.Equal(b.ModTime) && a.WrittenAt.Equal(b.WrittenAt)
}

func sameCold(a, b segment.Info) bool {
	return a.Version == b.Version && a.Size == b.Size && a.ModTime.Equal(b.ModTime) && a.WrittenAt.Equal(b.WrittenAt) &&
		a.StoredSize == b.StoredSize && a.Compression == b.Compression && a.Unresolved == b.Unresolved && a.Sums.Equal(b.Sums)
}

// ForgetDeleted drops the change numbers of records left with nothing whose
// last change is at most upTo.
func (x *Index) ForgetDeleted(upTo uint64) (int, error) {
	b := x.b
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for id := range b.deleted {
		if b.changes[id] <= upTo {
			delete(b.deleted, id)
			delete(b.changes, id)
			n++
		}
	}
	return n, nil
}

// List calls fn for every cold entry, ascending, without checksums.
func (x *Index) List(fn func(segment.Info) error) error {
	b := x.b
	b.mu.Lock()
	infos := make([]segment.Info, 0, len(b.cold))
	for _, c := range b.cold {
		c.Sums = nil
		infos = append(infos, c)
	}
	b.mu.Unlock()
	return emit(context.Background(), infos, fn)
}

// After returns up to n cold entries with ids above id, ascending.
func (x *Index) After(id segment.ID, n int) ([]segment.Info, error) {
	var out []segment.Info
	x.List(func(i segment.Info) error {
		if i.ID > id && len(out) < n {
			x.b.mu.Lock()
			out = append(out, x.b.cold[i.ID])
			x.b.mu.Unlock()
		}
		return nil
	})
	return out, nil
}

// Tombstones returns the pending cold deletes.
func (x *Index) Tombstones() (map[segment.ID]string, error) {
	x.b.mu.Lock()
	defer x.b.mu.Unlock()
	out := make(map[segment.ID]string, len(x.b.tombs))
	for id, v := range x.b.tombs {
		out[id] = v
	}
	return out, nil
}

// MarkReconciled records a full reconcile at t.
func (x *Index) MarkReconciled(t time.Time) error {
	x.b.mu.Lock()
	defer x.b.mu.Unlock()
	x.b.reconciled = t
	return nil
}

// Reconciled returns when the index last matched a full listing.
func (x *Index) Reconciled() (time.Time, bool) {
	x.b.mu.Lock()
	defer x.b.mu.Unlock()
	return x.b.reconciled, !x.b.reconciled.IsZero()
}

// Live calls fn for every segment readers see, ascending: its current
// version, else its cold entry, from one snapshot.
func (x *Index) Live(ctx context.Context, fn func(segment.Info) error) error {
	b := x.b
	b.mu.Lock()
	infos := make([]segment.Info, 0, len(b.objects)+len(b.cold))
	for _, o := range b.objects {
		info := o.info
		info.Sums = nil
		infos = append(infos, info)
	}
	for id, c := range b.cold {
		if _, hot := b.objects[id]; !hot {
			c.Sums = nil
			infos = append(infos, c)
		}
	}
	b.mu.Unlock()
	return emit(ctx, infos, fn)
}
