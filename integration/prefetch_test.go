package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/backendtest"
)

// TestPrefetchFollowingSegments: through a real mount on MinIO, cat of two
// cold segments in id order makes the mount fetch the next four
// (prefetch_segments defaults to 4) before anyone reads them, one GET each;
// reading them then costs no further request, and the bytes are the stored
// ones. The segment after those four is not fetched.
func TestPrefetchFollowingSegments(t *testing.T) {
	e, p := newProxyEnv(t, 5, "")
	srcs := map[uint64]string{}
	for id := uint64(10); id <= 16; id++ {
		srcs[id] = e.mustColdSegment(id, backendtest.RandomBytes(int64(id), 64<<10+int(id)))
	}
	m := e.mount("--read-only")
	p.ResetStats()
	sh(t, m.Segs(), fmt.Sprintf("cmp 10 %s && cmp 11 %s", srcs[10], srcs[11]))

	deadline := time.Now().Add(5 * time.Second)
	for id := uint64(12); id <= 15; id++ {
		for p.Count("GET", objName(id)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("segment %d was not prefetched after 10 and 11 were read in order", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond) // let a stray fetch of 16 show up
	if n := p.Count("GET", objName(16)); n != 0 {
		t.Fatalf("segment 16 fetched %d times, beyond the 4 following segments", n)
	}
	for id := uint64(12); id <= 15; id++ {
		sh(t, m.Segs(), fmt.Sprintf("cmp %d %s", id, srcs[id]))
	}
	for id := uint64(10); id <= 15; id++ {
		if n := p.Count("GET", objName(id)); n != 1 {
			t.Errorf("segment %d: %d GETs, want exactly 1", id, n)
		}
	}
}
