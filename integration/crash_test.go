package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/backendtest"
)

// TestCrashConsistency runs rounds of: writers store segments through the
// mount and record each once its close() returned; the mount is killed with
// SIGKILL mid-storm; after a remount every recorded segment must be there
// byte for byte.
func TestCrashConsistency(t *testing.T) {
	e := newEnv(t, "")
	const rounds = 3
	recorded := map[int]int64{} // id -> seed (size derives from it)
	var mu sync.Mutex
	next := atomic.Int64{}
	for round := 0; round < rounds; round++ {
		m := e.mount()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					id := int(next.Add(1))
					seed := int64(id*7919 + round)
					src := filepath.Join(e.dir, fmt.Sprintf("w%d", w))
					os.WriteFile(src, backendtest.RandomBytes(seed, sizeFor(seed)), 0o644)
					// cp returns only after close(); its exit status 0 is the ack.
					if _, err := shErr(m.Segs(), fmt.Sprintf("cp %s %d", src, id)); err == nil {
						mu.Lock()
						recorded[id] = seed
						mu.Unlock()
					}
				}
			}(w)
		}
		time.Sleep(time.Duration(1500+round*500) * time.Millisecond)
		m.kill()
		close(stop)
		wg.Wait()
	}
	m := e.mount()
	mu.Lock()
	defer mu.Unlock()
	if len(recorded) < 10 {
		t.Fatalf("only %d segments acknowledged in %d rounds", len(recorded), rounds)
	}
	for id, seed := range recorded {
		want := backendtest.RandomBytes(seed, sizeFor(seed))
		got, err := os.ReadFile(m.path(uint64(id)))
		if err != nil {
			t.Fatalf("segment %d acknowledged before the crash: %v", id, err)
		}
		if string(got) != string(want) {
			t.Fatalf("segment %d: %d bytes after crash, want %d identical", id, len(got), len(want))
		}
	}
	t.Logf("%d rounds of kill -9: %d acknowledged segments all intact", rounds, len(recorded))
	// A reader never sees half a segment: whatever exists beyond the
	// recorded set is complete too (cp of an unacknowledged one may or may not
	// have landed, but never partially).
	entries, _ := os.ReadDir(m.Segs())
	for _, ent := range entries {
		var id int
		fmt.Sscan(ent.Name(), &id)
		if _, ok := recorded[id]; ok {
			continue
		}
		seed := int64(-1)
		for round := 0; round < rounds; round++ {
			s := int64(id*7919 + round)
			info, _ := ent.Info()
			if info != nil && info.Size() == int64(sizeFor(s)) {
				seed = s
			}
		}
		if seed < 0 {
			t.Fatalf("segment %s has a size no writer wrote: a partial segment", ent.Name())
		}
		got, _ := os.ReadFile(filepath.Join(m.Segs(), ent.Name()))
		if string(got) != string(backendtest.RandomBytes(seed, sizeFor(seed))) {
			t.Fatalf("unacknowledged segment %s is not a complete version", ent.Name())
		}
	}
}

// sizeFor is a segment size for seed: mostly up to 4.2 MB, and every sixth
// one 12 MiB, past the 8 MiB at which a file being written is streamed into
// the hot tier (so kills also land in the middle of streams).
func sizeFor(seed int64) int {
	if seed%6 == 0 {
		return 12<<20 + int(seed%1000)
	}
	return int(seed%7)*700_000 + 1000
}
