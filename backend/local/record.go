package local

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// A segment's record is everything this file knows of it across the tiers:
// its hot version (meta/<id>), its indexed cold object (cold/<id>,
// coldsums/<id>), a pending cold delete (tombstones/<id>), and the change
// number of its last transition (changes/<id>). The parts live in separate
// buckets so that listings stay cheap, but every change to any of them is
// made in one transaction that also advances the change number, taken from
// one counter (the changes bucket's sequence) that never goes back. A
// change number therefore names one state of one record, and a caller that
// read a record can tell, in the transaction that commits its next step,
// whether anything changed since.
//
// A record with nothing left (deleted) keeps its change number, listed in
// deleted/<id>, until a reconcile pass that began after that change forgets
// it (ForgetDeleted): a pass that began before must see the delete as a
// change, not as "never heard of this segment".
var (
	bucketChanges   = []byte("changes")
	bucketDeleted   = []byte("deleted")
	bucketUploading = []byte("uploading")
)

// Record is backend.Record: one segment's state, read in one transaction.
type Record = backend.Record

// Record returns id's record.
func (x *Index) Record(id segment.ID) (Record, error) {
	var rec Record
	err := x.b.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = readRecord(tx, id)
		return err
	})
	if err != nil {
		return Record{}, fmt.Errorf("record of segment %d: %w", id, err)
	}
	return rec, nil
}

// Counter returns the change counter: every transition committed from now
// on gets a larger change number.
func (x *Index) Counter() (uint64, error) {
	var n uint64
	err := x.b.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketChanges).Sequence()
		return nil
	})
	return n, err
}

func changeOf(tx *bolt.Tx, id segment.ID) uint64 {
	if v := tx.Bucket(bucketChanges).Get(idKey(id)); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func readRecord(tx *bolt.Tx, id segment.ID) (Record, error) {
	rec := Record{ID: id, Change: changeOf(tx, id)}
	k := idKey(id)
	if v := tx.Bucket(bucketMeta).Get(k); v != nil {
		m, err := decodeMeta(v)
		if err != nil {
			return Record{}, err
		}
		info := m.info(id)
		if sb := tx.Bucket(bucketSums).Get(genKey(m.gen)); sb != nil {
			info.Sums = new(segment.Checksums)
			if err := info.Sums.UnmarshalBinary(sb); err != nil {
				return Record{}, err
			}
		}
		rec.Hot = &info
	}
	if v := tx.Bucket(bucketCold).Get(k); v != nil {
		info, err := decodeCold(id, v)
		if err != nil {
			return Record{}, err
		}
		if sb := tx.Bucket(bucketColdSums).Get(k); sb != nil {
			info.Sums = new(segment.Checksums)
			if err := info.Sums.UnmarshalBinary(sb); err != nil {
				return Record{}, err
			}
		}
		rec.Cold = &info
	}
	if v := tx.Bucket(bucketTombstones).Get(k); v != nil {
		t := string(v)
		rec.Tomb = &t
	}
	rec.Uploading = tx.Bucket(bucketUploading).Get(k) != nil
	return rec, nil
}

// changed records a transition of id: a new change number, and the deleted
// marker when nothing else is left. Every write transaction that touches a
// record calls it.
func changed(tx *bolt.Tx, id segment.ID) error {
	cb := tx.Bucket(bucketChanges)
	n, err := cb.NextSequence()
	if err != nil {
		return err
	}
	k := idKey(id)
	if err := cb.Put(k, binary.BigEndian.AppendUint64(nil, n)); err != nil {
		return err
	}
	empty := tx.Bucket(bucketMeta).Get(k) == nil && tx.Bucket(bucketCold).Get(k) == nil &&
		tx.Bucket(bucketTombstones).Get(k) == nil && tx.Bucket(bucketUploading).Get(k) == nil
	if empty {
		return tx.Bucket(bucketDeleted).Put(k, nil)
	}
	return tx.Bucket(bucketDeleted).Delete(k)
}

// Update is one transition of the records of ids (distinct), in one
// transaction: fn sees their current state and changes it in place; what
// it changed is stored and each changed record gets a new change number.
// fn returning an error aborts the transition (nothing is stored) and
// Update returns that error. Update returns the records as stored.
//
// What fn may do to Hot: drop it (nil), move it from one of the records to
// another (a rename), or change its ModTime. It cannot create bytes: new
// versions come from Put. A dropped version's chunks are freed once no
// reader pins them.
func (x *Index) Update(ids []segment.ID, fn func(recs []*Record) error) ([]Record, error) {
	if x.b.ro {
		return nil, backend.ErrReadOnly
	}
	var (
		out   []Record
		freed int64
	)
	err := x.b.db.Update(func(tx *bolt.Tx) error {
		freed = 0
		before := make([]Record, len(ids))
		recs := make([]*Record, len(ids))
		for i, id := range ids {
			rec, err := readRecord(tx, id)
			if err != nil {
				return err
			}
			before[i] = rec
			recs[i] = deepCopy(rec)
		}
		if err := fn(recs); err != nil {
			return err
		}
		// Hot versions: which generations are still pointed at.
		kept := map[string]bool{}
		owned := map[string]segment.Info{}
		for _, r := range before {
			if r.Hot != nil {
				owned[r.Hot.Version] = *r.Hot
			}
		}
		for _, r := range recs {
			if r.Hot != nil {
				if _, ok := owned[r.Hot.Version]; !ok {
					return fmt.Errorf("segment %d: %w: hot version %s is not one of the records'", r.ID, backend.ErrInvalid, r.Hot.Version)
				}
				if kept[r.Hot.Version] {
					return fmt.Errorf("segment %d: %w: hot version %s given twice", r.ID, backend.ErrInvalid, r.Hot.Version)
				}
				kept[r.Hot.Version] = true
			}
		}
		for v, info := range owned {
			if !kept[v] {
				gen, _ := strconv.ParseUint(v, 10, 64)
				if err := tx.Bucket(bucketGarbage).Put(genKey(gen), nil); err != nil {
					return err
				}
				freed += info.Size
			}
		}
		for i, r := range recs {
			dirty, err := writeRecord(tx, before[i], *r)
			if err != nil {
				return err
			}
			if dirty {
				if err := changed(tx, r.ID); err != nil {
					return err
				}
			}
		}
		out = out[:0]
		for _, id := range ids {
			rec, err := readRecord(tx, id)
			if err != nil {
				return err
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("update segment %d: %w", ids[0], err)
	}
	if freed > 0 {
		x.b.addUsage(-freed)
		x.b.kickGC()
	}
	return out, nil
}

// deepCopy copies a record so that fn's changes through its pointers do
// not reach the "before" state they are compared with.
func deepCopy(r Record) *Record {
	if r.Hot != nil {
		h := *r.Hot
		r.Hot = &h
	}
	if r.Cold != nil {
		c := *r.Cold
		r.Cold = &c
	}
	if r.Tomb != nil {
		t := *r.Tomb
		r.Tomb = &t
	}
	return &r
}

// writeRecord stores what differs between old and new; dirty reports
// whether anything did.
func writeRecord(tx *bolt.Tx, old, new Record) (dirty bool, err error) {
	k := idKey(new.ID)
	mb := tx.Bucket(bucketMeta)
	switch {
	case new.Hot == nil && old.Hot != nil:
		dirty = true
		if err := mb.Delete(k); err != nil {
			return false, err
		}
	case new.Hot != nil:
		gen, err := strconv.ParseUint(new.Hot.Version, 10, 64)
		if err != nil {
			return false, fmt.Errorf("hot version %q: %w", new.Hot.Version, backend.ErrInvalid)
		}
		m := meta{gen: gen, size: new.Hot.Size, mtime: new.Hot.ModTime.UnixNano(), written: new.Hot.WrittenAt.UnixNano()}
		if old.Hot == nil || !encodeMetaEqual(old.Hot, m) {
			dirty = true
			if err := mb.Put(k, m.encode()); err != nil {
				return false, err
			}
		}
	}
	switch {
	case new.Cold == nil && old.Cold != nil:
		dirty = true
		if err := tx.Bucket(bucketCold).Delete(k); err != nil {
			return false, err
		}
		if err := tx.Bucket(bucketColdSums).Delete(k); err != nil {
			return false, err
		}
	case new.Cold != nil && (old.Cold == nil || !sameCold(*old.Cold, *new.Cold)):
		dirty = true
		if err := putCold(tx, *new.Cold); err != nil {
			return false, err
		}
	}
	switch {
	case new.Tomb == nil && old.Tomb != nil:
		dirty = true
		if err := tx.Bucket(bucketTombstones).Delete(k); err != nil {
			return false, err
		}
	case new.Tomb != nil && (old.Tomb == nil || *old.Tomb != *new.Tomb):
		dirty = true
		if err := tx.Bucket(bucketTombstones).Put(k, []byte(*new.Tomb)); err != nil {
			return false, err
		}
	}
	if new.Uploading != old.Uploading {
		dirty = true
		ub := tx.Bucket(bucketUploading)
		if new.Uploading {
			err = ub.Put(k, nil)
		} else {
			err = ub.Delete(k)
		}
		if err != nil {
			return false, err
		}
	}
	return dirty || new.Touch, nil
}

func encodeMetaEqual(info *segment.Info, m meta) bool {
	gen, err := strconv.ParseUint(info.Version, 10, 64)
	return err == nil && gen == m.gen && info.Size == m.size && info.ModTime.UnixNano() == m.mtime &&
		info.WrittenAt.UnixNano() == m.written
}

func sameCold(a, b segment.Info) bool {
	return string(encodeCold(a)) == string(encodeCold(b)) && a.Sums.Equal(b.Sums)
}

func putCold(tx *bolt.Tx, info segment.Info) error {
	k := idKey(info.ID)
	if err := tx.Bucket(bucketCold).Put(k, encodeCold(info)); err != nil {
		return err
	}
	if info.Sums != nil {
		v, _ := info.Sums.MarshalBinary()
		return tx.Bucket(bucketColdSums).Put(k, v)
	}
	return tx.Bucket(bucketColdSums).Delete(k)
}

// ForgetDeleted drops the change numbers of deleted records whose last
// change is at most upTo (a reconcile pass that began after it has ended).
func (x *Index) ForgetDeleted(upTo uint64) (int, error) {
	if x.b.ro {
		return 0, nil
	}
	n := 0
	err := x.b.db.Update(func(tx *bolt.Tx) error {
		db := tx.Bucket(bucketDeleted)
		cb := tx.Bucket(bucketChanges)
		var drop [][]byte
		db.ForEach(func(k, _ []byte) error {
			v := cb.Get(k)
			if len(v) != 8 || binary.BigEndian.Uint64(v) <= upTo {
				drop = append(drop, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range drop {
			if tx.Bucket(bucketMeta).Get(k) != nil || tx.Bucket(bucketCold).Get(k) != nil || tx.Bucket(bucketTombstones).Get(k) != nil ||
				tx.Bucket(bucketUploading).Get(k) != nil {
				if err := db.Delete(k); err != nil { // not deleted after all
					return err
				}
				continue
			}
			if err := db.Delete(k); err != nil {
				return err
			}
			if err := cb.Delete(k); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// Live calls fn for every segment readers see, ascending by id: its hot
// version when it has one (without checksums), else its cold entry. Each
// batch of ids is read from both tiers in one transaction, so a segment
// moving between them while the listing runs is listed exactly once; fn is
// called outside any transaction.
func (x *Index) Live(ctx context.Context, fn func(segment.Info) error) error {
	var after []byte
	for {
		var batch []segment.Info
		err := x.b.db.View(func(tx *bolt.Tx) error {
			hc, cc := tx.Bucket(bucketMeta).Cursor(), tx.Bucket(bucketCold).Cursor()
			seek := func(c *bolt.Cursor) ([]byte, []byte) {
				if after == nil {
					return c.First()
				}
				k, v := c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
				return k, v
			}
			hk, hv := seek(hc)
			ck, cv := seek(cc)
			for (hk != nil || ck != nil) && len(batch) < 1000 {
				switch cmp := bytes.Compare(hk, ck); {
				case hk != nil && (ck == nil || cmp <= 0):
					m, err := decodeMeta(hv)
					if err != nil {
						return err
					}
					batch = append(batch, m.info(segment.ID(binary.BigEndian.Uint64(hk))))
					if cmp == 0 {
						ck, cv = cc.Next()
					}
					hk, hv = hc.Next()
				default:
					info, err := decodeCold(segment.ID(binary.BigEndian.Uint64(ck)), cv)
					if err != nil {
						return err
					}
					batch = append(batch, info)
					ck, cv = cc.Next()
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		for _, info := range batch {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(info); err != nil {
				return err
			}
		}
		after = idKey(batch[len(batch)-1].ID)
	}
}
