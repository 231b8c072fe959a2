package tier

import (
	"context"
	"fmt"
	"io"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/segment/ledger"
)

// This file gives operators' tools (metrics, status, verify) a read-only
// look at each tier on its own; the store's normal paths never call it.

// ArchiveBacklog counts the hot segments the archiver owes the cold tier:
// those written more than ArchiveAfter ago. With no cold tier there is no
// backlog.
func (s *Store) ArchiveBacklog(ctx context.Context) (count int, bytes int64, err error) {
	if s.cold == nil {
		return 0, 0, nil
	}
	now := s.cfg.Now()
	err = s.hot.List(ctx, func(i segment.Info) error {
		if now.Sub(i.WrittenAt) >= s.cfg.ArchiveAfter {
			count++
			bytes += i.Size
		}
		return nil
	})
	return count, bytes, err
}

// IndexList calls fn for every entry of the index of the cold tier,
// ascending by id.
func (s *Store) IndexList(fn func(segment.Info) error) error { return s.index.List(fn) }

// IndexEntry returns the index's entry for id, if any.
func (s *Store) IndexEntry(id segment.ID) (segment.Info, bool, error) {
	rec, err := s.index.Record(id)
	if err != nil || rec.Cold == nil {
		return segment.Info{}, false, err
	}
	return *rec.Cold, true, nil
}

// ColdList lists the cold tier itself (the bucket), not the index.
func (s *Store) ColdList(ctx context.Context, fn func(segment.Info) error) error {
	if s.cold == nil {
		return nil
	}
	return s.cold.List(ctx, fn)
}

// ColdStat asks the cold tier itself about id, bypassing the index.
func (s *Store) ColdStat(ctx context.Context, id segment.ID) (segment.Info, error) {
	if s.cold == nil {
		return segment.Info{}, fmt.Errorf("segment %d: %w", id, backend.ErrNotFound)
	}
	return s.cold.Stat(ctx, id)
}

// VerifyHot reads every byte of the hot copy of id and checks it against
// the checksums recorded when it was written.
func (s *Store) VerifyHot(ctx context.Context, id segment.ID) (int64, error) {
	info, err := s.hot.Stat(ctx, id)
	if err != nil {
		return 0, err
	}
	r, err := s.hot.Get(ctx, id, backend.GetOptions{Length: -1, Version: info.Version})
	if err != nil {
		return 0, err
	}
	defer r.Close()
	return verifyStream(ctx, info, r)
}

// VerifyCold reads every byte of the cold object of info (an index entry)
// straight from the cold tier, never the cache, and checks it against the
// recorded checksums (the index's, else the object's own metadata). A
// segment with no recorded checksums is only read through.
func (s *Store) VerifyCold(ctx context.Context, info segment.Info) (int64, error) {
	if s.cold == nil {
		return 0, fmt.Errorf("segment %d: no cold tier: %w", info.ID, backend.ErrNotFound)
	}
	if info.Unresolved || info.Sums == nil {
		full, err := s.cold.Stat(ctx, info.ID)
		if err != nil {
			return 0, err
		}
		if full.Version != info.Version && info.Version != "" {
			return 0, fmt.Errorf("segment %d: object version %s, index has %s: %w", info.ID, full.Version, info.Version, backend.ErrStale)
		}
		if info.Sums == nil {
			info.Sums = full.Sums
		}
		info.Size, info.Compression = full.Size, full.Compression
	}
	var want []byte
	if mr, ok := backend.AsMerkleRoots(s.cold); ok {
		var err error
		if want, err = mr.MerkleRoot(ctx, info.ID); err != nil {
			return 0, err
		}
	}
	r, err := s.cold.Get(ctx, info.ID, backend.GetOptions{Length: -1, Version: info.Version, Compression: info.Compression})
	if err != nil {
		return 0, err
	}
	defer r.Close()
	if want == nil {
		return verifyStream(ctx, info, r)
	}
	// A Merkle root recorded beside the segment (a Scribe Ledger
	// sidecar's) is checked against the bytes as they stream.
	check := ledger.NewRootCheck()
	n, err := verifyStream(ctx, info, io.TeeReader(r, check))
	sum, serr := check.Close()
	if err != nil {
		return n, err
	}
	if err := ledger.Mismatch(uint64(info.ID), want, sum, serr); err != nil {
		return n, &MerkleError{msg: err.Error()}
	}
	return n, nil
}

// MerkleError is returned (wrapped) when a segment's bytes do not have the
// Merkle root recorded beside them. It is a segment.ErrChecksum.
type MerkleError struct{ msg string }

func (e *MerkleError) Error() string        { return e.msg }
func (e *MerkleError) Is(target error) bool { return target == segment.ErrChecksum }

// verifyStream reads r block by block and checks each block, the whole-sum
// and the length against info.
func verifyStream(ctx context.Context, info segment.Info, r io.Reader) (int64, error) {
	var sum segment.Summer
	buf := make([]byte, segment.BlockSize)
	var n int64
	for blk := int64(0); ; blk++ {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, err := io.ReadFull(r, buf)
		if m > 0 {
			if verr := info.Sums.VerifyBlock(blk, buf[:m]); verr != nil {
				return n, fmt.Errorf("segment %d: %w", info.ID, verr)
			}
			sum.Write(buf[:m])
			n += int64(m)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return n, fmt.Errorf("segment %d at offset %d: %w", info.ID, n, err)
		}
	}
	if n != info.Size {
		return n, fmt.Errorf("segment %d: %w: %d bytes stored, %d recorded", info.ID, segment.ErrChecksum, n, info.Size)
	}
	if info.Sums != nil && sum.Sums().Whole != info.Sums.Whole {
		return n, fmt.Errorf("segment %d: %w: whole crc32c %08x, recorded %08x", info.ID, segment.ErrChecksum, sum.Sums().Whole, info.Sums.Whole)
	}
	return n, nil
}
