package integration

import (
	"bytes"
	"sync"
)

// syncBuffer is a buffer safe for a child's stdout and stderr. The buffer is
// a named field, not embedded: embedding would expose bytes.Buffer.ReadFrom,
// which io.Copy prefers, bypassing the lock.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
