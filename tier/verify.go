package tier

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// VerifyOptions qualify a Verify.
type VerifyOptions struct {
	// Repair brings the index back in line with the bucket once the scan
	// is done (Store.Reconcile): orphans are indexed, entries whose
	// object is gone are dropped, drifted versions are refreshed. Bytes
	// that fail their checksum cannot be repaired and stay reported.
	Repair bool
	// Parallel bounds segments read at once: 1 to MaxVerifyParallel, 0
	// for the default of 4.
	Parallel int
}

// MaxVerifyParallel is the most segments Verify reads at once: each reader
// holds a goroutine and a block buffer, so the bound is also a bound on
// the memory one request can make the store use.
const MaxVerifyParallel = 64

// Problem kinds, as Verify reports them.
const (
	// ProblemChecksum: stored bytes do not match the checksums recorded
	// when they were written (or their length differs).
	ProblemChecksum = "checksum"
	// ProblemMissing: the index lists a cold segment whose object is not in
	// the bucket (data missing).
	ProblemMissing = "missing"
	// ProblemOrphan: the bucket holds a segment object the index does not
	// know (index drift: the segment is invisible until reconciled).
	ProblemOrphan = "orphan"
	// ProblemDrift: index and bucket disagree on a segment's version.
	ProblemDrift = "drift"
	// ProblemUnreadable: reading the segment failed for another reason.
	ProblemUnreadable = "unreadable"
	// ProblemMerkle: the segment's bytes do not have the Merkle root its
	// Scribe Ledger sidecar records (they may match their own checksums:
	// the bytes or the sidecar were changed since the root was computed).
	ProblemMerkle = "merkle"
)

// Problem is one thing Verify found wrong.
type Problem struct {
	Kind   string     `json:"kind"`
	ID     segment.ID `json:"id"`
	Tier   string     `json:"tier"`
	Detail string     `json:"detail"`
}

func (p Problem) String() string {
	return fmt.Sprintf("segment %d (%s): %s: %s", p.ID, p.Tier, p.Kind, p.Detail)
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	HotChecked  int       `json:"hot_checked"`
	ColdChecked int       `json:"cold_checked"`
	Bytes       int64     `json:"bytes"`
	Problems    []Problem `json:"problems"`
	// Repaired is set when Repair reconciled the index.
	Repaired bool `json:"repaired"`
}

// VerifyProgress is called as segments are checked; total may grow while
// the bucket is being listed.
type VerifyProgress func(done, total int, bytes int64)

// Verify checks every hot segment's bytes against its block checksums,
// compares the index of the cold tier with a listing of the bucket, and
// reads every cold object back against its recorded checksums and, when a
// Scribe Ledger sidecar records one, its Merkle root.
func (s *Store) Verify(ctx context.Context, opts VerifyOptions, progress VerifyProgress) (VerifyReport, error) {
	if opts.Parallel < 0 || opts.Parallel > MaxVerifyParallel {
		return VerifyReport{}, fmt.Errorf("verify: %w: parallel %d: want 1 to %d", backend.ErrInvalid, opts.Parallel, MaxVerifyParallel)
	}
	if opts.Parallel == 0 {
		opts.Parallel = 4
	}
	if progress == nil {
		progress = func(int, int, int64) {}
	}
	var (
		mu     sync.Mutex
		rep    VerifyReport
		done   int
		total  int
		report = func(p Problem) { mu.Lock(); rep.Problems = append(rep.Problems, p); mu.Unlock() }
	)
	hot, err := s.HotSegments(ctx)
	if err != nil {
		return rep, err
	}
	// The cold plan: the index as it is now, against the bucket listing.
	index := map[segment.ID]segment.Info{}
	if err := s.IndexList(func(i segment.Info) error { index[i.ID] = i; return nil }); err != nil {
		return rep, err
	}
	listed := map[segment.ID]segment.Info{}
	if s.HasCold() {
		if err := s.ColdList(ctx, func(i segment.Info) error { listed[i.ID] = i; return nil }); err != nil {
			return rep, fmt.Errorf("listing the bucket: %w", err)
		}
	}
	var cold []segment.Info
	for id, ix := range index {
		obj, ok := listed[id]
		switch {
		case !ok:
			// The archiver may have replaced or removed it meanwhile:
			// only a second look at both sides makes it a problem.
			if p, bad := s.recheckMissing(ctx, id); bad {
				report(p)
			}
		case obj.Version != ix.Version && !ix.Unresolved && obj.Version != "":
			if cur, ok, _ := s.IndexEntry(id); ok && cur.Version == obj.Version {
				cold = append(cold, cur)
				continue
			}
			report(Problem{ProblemDrift, id, "cold", fmt.Sprintf("index has version %s, bucket has %s", ix.Version, obj.Version)})
		default:
			cold = append(cold, ix)
		}
	}
	for id := range listed {
		if _, ok := index[id]; ok {
			continue
		}
		if _, ok, _ := s.IndexEntry(id); ok {
			continue // archived while we listed
		}
		report(Problem{ProblemOrphan, id, "cold", "object in the bucket is not in the index"})
	}
	sort.Slice(cold, func(a, b int) bool { return cold[a].ID < cold[b].ID })
	total = len(hot) + len(cold)
	progress(0, total, 0)

	type job struct {
		info segment.Info
		hot  bool
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range opts.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				var n int64
				var err error
				where := "cold"
				if j.hot {
					where = "hot"
					n, err = s.VerifyHot(ctx, j.info.ID)
				} else {
					n, err = s.VerifyCold(ctx, j.info)
				}
				switch {
				case err == nil:
				case errors.Is(err, backend.ErrNotFound), errors.Is(err, backend.ErrStale):
					// Deleted, archived or overwritten while we looked:
					// not a fault of the store.
				case errors.As(err, new(*MerkleError)):
					report(Problem{ProblemMerkle, j.info.ID, where, err.Error()})
				case errors.Is(err, segment.ErrChecksum):
					report(Problem{ProblemChecksum, j.info.ID, where, err.Error()})
				case ctx.Err() != nil:
				default:
					report(Problem{ProblemUnreadable, j.info.ID, where, err.Error()})
				}
				mu.Lock()
				done++
				rep.Bytes += n
				if j.hot {
					rep.HotChecked++
				} else {
					rep.ColdChecked++
				}
				// Under the lock: progress callbacks are serial, in order.
				progress(done, total, rep.Bytes)
				mu.Unlock()
			}
		}()
	}
feed:
	for _, list := range []struct {
		infos []segment.Info
		hot   bool
	}{{hot, true}, {cold, false}} {
		for _, i := range list.infos {
			select {
			case jobs <- job{i, list.hot}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	sort.Slice(rep.Problems, func(a, b int) bool {
		if rep.Problems[a].ID != rep.Problems[b].ID {
			return rep.Problems[a].ID < rep.Problems[b].ID
		}
		return rep.Problems[a].Kind < rep.Problems[b].Kind
	})
	if opts.Repair && s.HasCold() {
		if err := s.Reconcile(ctx); err != nil {
			return rep, fmt.Errorf("repairing the index: %w", err)
		}
		rep.Repaired = true
	}
	return rep, nil
}

// recheckMissing confirms that an index entry has no object: the entry is
// still there and S3 still says not found.
func (s *Store) recheckMissing(ctx context.Context, id segment.ID) (Problem, bool) {
	cur, ok, err := s.IndexEntry(id)
	if err != nil || !ok {
		return Problem{}, false
	}
	_, err = s.ColdStat(ctx, id)
	if errors.Is(err, backend.ErrNotFound) {
		return Problem{ProblemMissing, id, "cold", fmt.Sprintf("the index lists %d bytes in the cold tier, but the bucket has no object", cur.Size)}, true
	}
	if err != nil {
		return Problem{ProblemUnreadable, id, "cold", err.Error()}, true
	}
	return Problem{}, false
}
