package local

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scribefs/scribefs/segment"
)

// Index records what this store knows of the cold tier, so that listing and
// stat of cold segments need no S3 request. It lives in the hot tier's bbolt
// file. Entries carry their block checksums (kept in a separate bucket so a
// listing does not decode them).
type Index struct {
	b *Backend
}

// Index returns the cold-tier index stored in this file.
func (b *Backend) Index() *Index { return &Index{b: b} }

// Get returns the entry for id; ok is false when there is none.
func (x *Index) Get(id segment.ID) (info segment.Info, ok bool, err error) {
	err = x.b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCold).Get(idKey(id))
		if v == nil {
			return nil
		}
		info, err = decodeCold(id, v)
		if err != nil {
			return err
		}
		ok = true
		if sb := tx.Bucket(bucketColdSums).Get(idKey(id)); sb != nil {
			var sums segment.Checksums
			if err := sums.UnmarshalBinary(sb); err != nil {
				return err
			}
			info.Sums = &sums
		}
		return nil
	})
	if err != nil {
		return segment.Info{}, false, fmt.Errorf("index get segment %d: %w", id, err)
	}
	return info, ok, nil
}

// After returns up to n entries with ids above id, ascending, with their
// checksums when recorded.
func (x *Index) After(id segment.ID, n int) ([]segment.Info, error) {
	var infos []segment.Info
	err := x.b.db.View(func(tx *bolt.Tx) error {
		sums := tx.Bucket(bucketColdSums)
		c := tx.Bucket(bucketCold).Cursor()
		k, v := c.Seek(idKey(id))
		if k != nil && segment.ID(binary.BigEndian.Uint64(k)) == id {
			k, v = c.Next()
		}
		for ; k != nil && len(infos) < n; k, v = c.Next() {
			next := segment.ID(binary.BigEndian.Uint64(k))
			info, err := decodeCold(next, v)
			if err != nil {
				return err
			}
			if sb := sums.Get(k); sb != nil {
				info.Sums = new(segment.Checksums)
				if err := info.Sums.UnmarshalBinary(sb); err != nil {
					return err
				}
			}
			infos = append(infos, info)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index entries after segment %d: %w", id, err)
	}
	return infos, nil
}

// Put records an entry (replacing any), with its checksums when it has them.
func (x *Index) Put(info segment.Info) error {
	return x.PutBatch([]segment.Info{info})
}

// PutBatch records many entries in one transaction (reconciling with a
// bucket listing).
func (x *Index) PutBatch(infos []segment.Info) error {
	if x.b.ro {
		return nil
	}
	err := x.b.db.Update(func(tx *bolt.Tx) error {
		for _, info := range infos {
			if err := putCold(tx, info); err != nil {
				return err
			}
			if err := changed(tx, info.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("index put: %w", err)
	}
	return nil
}

// Delete forgets id.
func (x *Index) Delete(id segment.ID) error {
	if x.b.ro {
		return nil
	}
	err := x.b.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketColdSums).Delete(idKey(id)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketCold).Delete(idKey(id)); err != nil {
			return err
		}
		return changed(tx, id)
	})
	if err != nil {
		return fmt.Errorf("index delete segment %d: %w", id, err)
	}
	return nil
}

// List calls fn for each entry in ascending id order (see listBatches).
// Entries carry no Sums.
func (x *Index) List(fn func(segment.Info) error) error {
	err := x.b.listBatches(context.Background(), bucketCold, func(k, v []byte) (segment.Info, error) {
		return decodeCold(segment.ID(binary.BigEndian.Uint64(k)), v)
	}, fn)
	if err != nil {
		return fmt.Errorf("index list: %w", err)
	}
	return nil
}

// Tombstones record cold deletes that could not be carried out yet (S3
// down): reconciling with a bucket listing must not bring such a segment
// back, and the delete is replayed later against the version recorded.

// AddTombstone records a pending delete of version of id.
func (x *Index) AddTombstone(id segment.ID, version string) error {
	err := x.b.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketTombstones).Put(idKey(id), []byte(version)); err != nil {
			return err
		}
		return changed(tx, id)
	})
	if err != nil {
		return fmt.Errorf("index tombstone segment %d: %w", id, err)
	}
	return nil
}

// RemoveTombstone forgets a pending delete once it is done (or superseded
// by a new write of the id).
func (x *Index) RemoveTombstone(id segment.ID) error {
	if x.b.ro {
		return nil
	}
	return x.b.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketTombstones).Delete(idKey(id)); err != nil {
			return err
		}
		return changed(tx, id)
	})
}

// Tombstones returns the pending deletes: id -> version.
func (x *Index) Tombstones() (map[segment.ID]string, error) {
	out := map[segment.ID]string{}
	err := x.b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTombstones).ForEach(func(k, v []byte) error {
			out[segment.ID(binary.BigEndian.Uint64(k))] = string(v)
			return nil
		})
	})
	return out, err
}

func encodeCold(info segment.Info) []byte {
	var buf []byte
	buf = binary.AppendVarint(buf, info.Size)
	buf = binary.AppendVarint(buf, info.ModTime.UnixNano())
	buf = binary.AppendVarint(buf, unixNanoOrZero(info.WrittenAt))
	buf = binary.AppendVarint(buf, info.StoredSize)
	buf = binary.AppendUvarint(buf, uint64(len(info.Version)))
	buf = append(buf, info.Version...)
	buf = binary.AppendUvarint(buf, uint64(len(info.Compression)))
	buf = append(buf, info.Compression...)
	var flags uint64
	if info.Unresolved {
		flags |= flagUnresolved
	}
	return binary.AppendUvarint(buf, flags)
}

func unixNanoOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

var errCorruptIndex = errors.New("corrupt index entry")

// Entry flags, a trailing varint.
const flagUnresolved = 1

func decodeCold(id segment.ID, v []byte) (segment.Info, error) {
	r := bytes.NewReader(v)
	var vals [4]int64
	for i := range vals {
		x, err := binary.ReadVarint(r)
		if err != nil {
			return segment.Info{}, fmt.Errorf("segment %d: %w", id, errCorruptIndex)
		}
		vals[i] = x
	}
	str := func() (string, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > uint64(r.Len()) {
			return "", fmt.Errorf("segment %d: %w", id, errCorruptIndex)
		}
		b := make([]byte, n)
		r.Read(b)
		return string(b), nil
	}
	version, err := str()
	if err != nil {
		return segment.Info{}, err
	}
	comp, err := str()
	if err != nil {
		return segment.Info{}, err
	}
	info := segment.Info{ID: id, Size: vals[0], ModTime: time.Unix(0, vals[1]).UTC(), Tier: segment.TierCold,
		StoredSize: vals[3], Version: version, Compression: comp}
	if vals[2] != 0 {
		info.WrittenAt = time.Unix(0, vals[2]).UTC()
	}
	if flags, err := binary.ReadUvarint(r); err == nil {
		info.Unresolved = flags&flagUnresolved != 0
	}
	return info, nil
}

var keyReconciled = []byte("reconciled")

// MarkReconciled records that the index matched a full bucket listing at t,
// so a later process can trust it for "no such segment" before its own
// first listing (S3 may be down then).
func (x *Index) MarkReconciled(t time.Time) error {
	if x.b.ro {
		return nil
	}
	return x.b.db.Update(func(tx *bolt.Tx) error {
		v := binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
		return tx.Bucket(bucketFormat).Put(keyReconciled, v)
	})
}

// Reconciled returns when the index last matched a full listing.
func (x *Index) Reconciled() (time.Time, bool) {
	var t time.Time
	x.b.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketFormat).Get(keyReconciled); len(v) == 8 {
			t = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
		}
		return nil
	})
	return t, !t.IsZero()
}
