package cache

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scribefs/scribefs/segment"
)

func block(n int, fill byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = fill
	}
	return b
}

// TestByteBound: whatever the mix of block sizes, the cache never holds more
// than its bound, and it keeps the most recently used.
func TestByteBound(t *testing.T) {
	const max = 10 << 20
	c := New(max)
	sizes := []int{1 << 20, 4096, 3 << 20, 1, 7 << 20, 1 << 20}
	for i := 0; i < 200; i++ {
		n := sizes[i%len(sizes)]
		c.Add(Key{ID: segment.ID(i)}, block(n, byte(i)))
		if s := c.Stats(); s.Bytes > max {
			t.Fatalf("after %d adds: %d bytes cached, bound %d", i+1, s.Bytes, max)
		}
	}
	if !c.Contains(Key{ID: 199}) {
		t.Fatal("most recent block evicted")
	}
	if c.Contains(Key{ID: 0}) {
		t.Fatal("oldest block still cached")
	}
	c.Add(Key{ID: 1000}, block(max+1, 1))
	if c.Contains(Key{ID: 1000}) || c.Stats().Bytes > max {
		t.Fatal("a block larger than the bound was cached")
	}
	if c.Stats().Evictions == 0 {
		t.Fatal("no evictions counted")
	}
}

func TestReplaceAccounting(t *testing.T) {
	c := New(100)
	c.Add(Key{ID: 1}, block(60, 1))
	c.Add(Key{ID: 1}, block(30, 2))
	if s := c.Stats(); s.Bytes != 30 || s.Entries != 1 {
		t.Fatalf("after replace: %+v", s)
	}
}

// TestSingleFetch: concurrent misses of one key fetch once.
func TestSingleFetch(t *testing.T) {
	c := New(1 << 20)
	var fetches atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := c.Get(Key{ID: 7, Version: "v"}, func() ([]byte, error) {
				fetches.Add(1)
				<-release
				return []byte("data"), nil
			})
			if err != nil || string(b) != "data" {
				t.Errorf("get: %q %v", b, err)
			}
		}()
	}
	// Let every goroutine reach the cache while the first fetch is blocked.
	for fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for concurrent misses, want 1", n)
	}
}

func TestFetchErrorNotCached(t *testing.T) {
	c := New(1 << 20)
	boom := errors.New("boom")
	if _, err := c.Get(Key{ID: 1}, func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	b, err := c.Get(Key{ID: 1}, func() ([]byte, error) { return []byte("ok"), nil })
	if err != nil || string(b) != "ok" {
		t.Fatalf("after error: %q %v", b, err)
	}
	if s := c.Stats(); s.Hits != 0 || s.Misses != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func BenchmarkCacheHit(b *testing.B) {
	c := New(256 << 20)
	data := make([]byte, segment.BlockSize)
	for i := 0; i < 64; i++ {
		c.Add(Key{ID: segment.ID(i), Version: "v"}, data)
	}
	b.SetBytes(segment.BlockSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Get(Key{ID: segment.ID(i % 64), Version: "v"}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
