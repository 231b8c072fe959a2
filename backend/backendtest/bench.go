package backendtest

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// BenchFactory returns a new, empty backend for a benchmark.
type BenchFactory func(b *testing.B) backend.Backend

// BenchSizes mirror the upstream S3 storage benchmarks.
var BenchSizes = []int64{1 << 10, 10 << 10, 100 << 10, 1 << 20}

// RunBenchmarks measures put and get at BenchSizes and list of 10 and
// 10,000 segments, reporting throughput with b.SetBytes.
func RunBenchmarks(b *testing.B, newBackend BenchFactory) {
	for _, size := range BenchSizes {
		data := RandomBytes(size, size)
		b.Run(fmt.Sprintf("Put/%s", human(size)), func(b *testing.B) {
			be := newBackend(b)
			defer be.Close()
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := be.Put(ctx, segment.ID(i%64), bytes.NewReader(data), backend.PutOptions{Size: size}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("Get/%s", human(size)), func(b *testing.B) {
			be := newBackend(b)
			defer be.Close()
			for i := 0; i < 8; i++ {
				if _, err := be.Put(ctx, segment.ID(i), bytes.NewReader(data), backend.PutOptions{Size: size}); err != nil {
					b.Fatal(err)
				}
			}
			buf := make([]byte, size)
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := be.Get(ctx, segment.ID(i%8), backend.Whole)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(r, buf); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("List/%d", n), func(b *testing.B) {
			be := newBackend(b)
			defer be.Close()
			for i := 0; i < n; i++ {
				if _, err := be.Put(ctx, segment.ID(i), bytes.NewReader([]byte("x")), backend.PutOptions{Size: 1}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				count := 0
				if err := be.List(ctx, func(segment.Info) error { count++; return nil }); err != nil {
					b.Fatal(err)
				}
				if count != n {
					b.Fatalf("listed %d, want %d", count, n)
				}
			}
		})
	}
}

func human(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
