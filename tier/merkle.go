package tier

import (
	"context"
	"log/slog"
	"sync"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/segment/ledger"
)

// merkleCheck is the Merkle root recorded for the cold version a Reader
// pins, and the outcome of checking it (Config.VerifyMerkle).
type merkleCheck struct {
	want []byte
	log  *slog.Logger

	mu   sync.Mutex // guards done and err; held while checking
	done bool
	err  error
}

// merkleOf returns the check for a Reader of the cold version info, or nil
// when none is asked for or recorded. A root that cannot be read is logged
// and not checked: reads do not fail for want of the sidecar.
func (s *Store) merkleOf(ctx context.Context, info segment.Info) *merkleCheck {
	if !s.cfg.VerifyMerkle || s.cold == nil {
		return nil
	}
	mr, ok := backend.AsMerkleRoots(s.cold)
	if !ok {
		return nil
	}
	root, err := mr.MerkleRoot(ctx, info.ID)
	if err != nil {
		s.log.Warn("merkle root not checked: the sidecar cannot be read", "op", "open", "segment", info.ID, "err", err)
		return nil
	}
	if root == nil {
		return nil
	}
	return &merkleCheck{want: root, log: s.log}
}

// check recomputes the root of the pinned version from its blocks (cached
// from the whole read that is ending) once, and returns a MerkleError,
// logged naming the segment, when it differs from the recorded one.
func (m *merkleCheck) check(ctx context.Context, f *fetcher, info segment.Info) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done {
		return m.err
	}
	rc := ledger.NewRootCheck()
	for blk := int64(0); blk*segment.BlockSize < info.Size; blk++ {
		data, err := f.coldBlock(ctx, info, blk)
		if err != nil {
			rc.Close()
			return err // a read error, not an outcome: try again next time
		}
		rc.Write(data)
	}
	sum, serr := rc.Close()
	m.done = true
	if err := ledger.Mismatch(uint64(info.ID), m.want, sum, serr); err != nil {
		m.err = &MerkleError{msg: "read " + err.Error()}
		m.log.Error("merkle root mismatch: the segment's bytes lack the root its sidecar records", "op", "read", "segment", info.ID, "err", m.err)
	}
	return m.err
}
