// Package cache is the read-through cache of cold-tier data: a
// least-recently-used set of segment blocks bounded by bytes, never by
// entry count, so its memory use does not depend on segment sizes.
//
// It caches immutable data only: keys name a segment version, so an
// overwritten segment's blocks are simply never asked for again and age out.
// It knows nothing of where blocks come from; the caller passes a fetch
// function, and concurrent misses for the same block share one fetch.
package cache

import (
	"fmt"
	"math"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/singleflight"

	"github.com/scribefs/scribefs/segment"
)

// Key names one block of one segment version.
type Key struct {
	ID      segment.ID
	Version string
	Block   int64
}

func (k Key) String() string { return fmt.Sprintf("%d@%s#%d", k.ID, k.Version, k.Block) }

// Stats are cumulative counters.
type Stats struct {
	Hits, Misses, Evictions int64
	Bytes, MaxBytes         int64
	Entries                 int
}

// Blocks is a byte-bounded LRU of blocks. Safe for concurrent use.
type Blocks struct {
	max int64

	// mu guards lru, bytes and the counters.
	mu        sync.Mutex
	lru       *lru.LRU[Key, []byte]
	bytes     int64
	hits      int64
	misses    int64
	evictions int64

	flight singleflight.Group
}

// New returns a cache holding at most maxBytes of block data. maxBytes 0
// disables caching (every Get fetches).
func New(maxBytes int64) *Blocks {
	c := &Blocks{max: maxBytes}
	// The entry count is unbounded; eviction is driven by bytes in add.
	c.lru, _ = lru.NewLRU[Key, []byte](math.MaxInt, func(_ Key, v []byte) {
		c.bytes -= int64(len(v))
		c.evictions++
	})
	return c
}

// Get returns the block for k, fetching it on a miss. The returned slice
// must not be modified. Concurrent Gets of one missing key call fetch once.
func (c *Blocks) Get(k Key, fetch func() ([]byte, error)) ([]byte, error) {
	if b, ok := c.Peek(k); ok {
		return b, nil
	}
	v, err, _ := c.flight.Do(k.String(), func() (any, error) {
		if b, ok := c.peekQuiet(k); ok {
			return b, nil
		}
		b, err := fetch()
		if err != nil {
			return nil, err
		}
		c.Add(k, b)
		return b, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// Peek returns a cached block and marks it recently used.
func (c *Blocks) Peek(k Key) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.lru.Get(k)
	if ok {
		c.hits++
	} else {
		c.misses++
	}
	return b, ok
}

func (c *Blocks) peekQuiet(k Key) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Get(k)
}

// Contains reports whether k is cached, without touching recency.
func (c *Blocks) Contains(k Key) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Contains(k)
}

// Add inserts a block, evicting the least recently used until the cache is
// within its byte bound. A block larger than the whole bound is not kept.
func (c *Blocks) Add(k Key, b []byte) {
	n := int64(len(b))
	if n > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.lru.Peek(k); ok {
		c.bytes -= int64(len(old))
	}
	c.lru.Add(k, b)
	c.bytes += n
	for c.bytes > c.max {
		if _, _, ok := c.lru.RemoveOldest(); !ok {
			break
		}
	}
}

// Stats returns a snapshot of the counters.
func (c *Blocks) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Hits: c.hits, Misses: c.misses, Evictions: c.evictions, Bytes: c.bytes, MaxBytes: c.max, Entries: c.lru.Len()}
}
