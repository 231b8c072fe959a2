package faultproxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/backend/retry"
	s3b "github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/internal/faultproxy"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
)

const (
	idleTimeout = time.Second
	maxRetries  = 3
)

// stack is the S3 backend wrapped by the retry wrapper, as a mount
// assembles it, talking to a real MinIO through a fault proxy.
type stack struct {
	proxy   *faultproxy.Proxy
	s3      *s3b.Backend
	b       backend.Backend
	retries int
}

func mustStack(t *testing.T, srv *miniotest.Server, bucket string) *stack {
	t.Helper()
	p, err := faultproxy.New(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	raw, err := s3b.New(context.Background(), s3b.Config{
		Bucket: bucket, Region: miniotest.Region, Endpoint: p.URL,
		AccessKeyID: miniotest.AccessKey, SecretAccessKey: miniotest.SecretKey,
		PathStyle: true, Timeout: idleTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{proxy: p, s3: raw}
	st.b = retry.New(raw, retry.Policy{MaxRetries: maxRetries, BaseDelay: 20 * time.Millisecond, MaxDelay: 100 * time.Millisecond,
		OnRetry: func(string, segment.ID, int, error) { st.retries++ }})
	return st
}

func key(id segment.ID) string { return fmt.Sprintf("segment-%016x", uint64(id)) }

// TestFaultsS3Backend: each fault between the S3 backend and MinIO is
// retried and the operation succeeds with the right bytes; exhausting the
// retries fails with ErrUnavailable within timeout × attempts; corrupted
// bytes fail the read; afterwards no goroutine is left behind.
func TestFaultsS3Backend(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	ctx := context.Background()

	// Baseline after one clean round trip, so the SDK's lazily started
	// goroutines and pooled connections are already counted.
	st := mustStack(t, srv, bucket)
	data := backendtest.RandomBytes(1, 3<<20+17)
	const id = segment.ID(42)
	if _, err := st.b.Put(ctx, id, bytes.NewReader(data), backend.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	readAll := func(opts backend.GetOptions) ([]byte, error) {
		r, err := st.b.Get(ctx, id, opts)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
	}
	if got, err := readAll(backend.Whole); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("clean read: %d bytes, %v", len(got), err)
	}
	st.s3.Close()
	runtime.GC()
	baseline := runtime.NumGoroutine()

	transient := []struct {
		name  string
		fault faultproxy.Fault
		opts  backend.GetOptions
	}{
		{"500 InternalError", faultproxy.Fault{Kind: faultproxy.Error, Status: 500, Code: "InternalError"}, backend.Whole},
		{"503 SlowDown", faultproxy.Fault{Kind: faultproxy.Error, Status: 503, Code: "SlowDown"}, backend.Whole},
		{"reset mid-body", faultproxy.Fault{Kind: faultproxy.Reset, After: 1 << 20}, backend.Whole},
		{"truncated body", faultproxy.Fault{Kind: faultproxy.Truncate, After: 1 << 20}, backend.Whole},
		{"stall mid-body", faultproxy.Fault{Kind: faultproxy.Stall, After: 512 << 10}, backend.Whole},
		{"stall before headers", faultproxy.Fault{Kind: faultproxy.Stall, After: -1}, backend.Whole},
		{"reset mid-range", faultproxy.Fault{Kind: faultproxy.Reset, After: 300 << 10}, backend.GetOptions{Offset: 1 << 20, Length: 1 << 20}},
	}
	for _, c := range transient {
		t.Run(c.name, func(t *testing.T) {
			st.proxy.ResetStats()
			st.retries = 0
			f := c.fault
			f.Method, f.PathContains, f.FirstN = "GET", key(id), 2
			st.proxy.Set(f)
			start := time.Now()
			got, err := readAll(c.opts)
			took := time.Since(start)
			want := data
			if c.opts.Length > 0 {
				want = data[c.opts.Offset : c.opts.Offset+c.opts.Length]
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("after 2 injected faults: %d bytes, %v", len(got), err)
			}
			gets := st.proxy.Count("GET", key(id))
			if gets != 3 || st.retries != 2 {
				t.Fatalf("GET requests %d, retries %d; want 3 and 2", gets, st.retries)
			}
			t.Logf("MEASURED %s: success after %d GETs (%d retries) in %v", c.name, gets, st.retries, took.Round(time.Millisecond))
		})
	}

	t.Run("latency and bandwidth", func(t *testing.T) {
		st.proxy.ResetStats()
		st.proxy.Set(faultproxy.Fault{Kind: faultproxy.Latency, Delay: 700 * time.Millisecond, Method: "GET"})
		start := time.Now()
		if got, err := readAll(backend.Whole); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("with 700ms latency (idle timeout 1s): %d bytes, %v", len(got), err)
		}
		lat := time.Since(start)
		// 1.5 MiB/s: the 3 MiB read takes ~2 s, twice the idle timeout,
		// and must not be cut because bytes keep flowing.
		st.proxy.Set(faultproxy.Fault{Kind: faultproxy.Bandwidth, BytesPerSec: 3 << 19, Method: "GET"})
		start = time.Now()
		if got, err := readAll(backend.Whole); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("at 1.5 MiB/s: %d bytes, %v", len(got), err)
		}
		bw := time.Since(start)
		if bw < 1500*time.Millisecond {
			t.Fatalf("bandwidth cap not applied: %v", bw)
		}
		if n := st.proxy.Count("GET", ""); n != 2 {
			t.Fatalf("%d GETs for 2 slow reads: slow transfers were retried", n)
		}
		t.Logf("MEASURED latency 700ms: 1 GET in %v; 1.5 MiB/s cap: 1 GET, no retry, in %v (idle timeout %v)", lat.Round(time.Millisecond), bw.Round(time.Millisecond), idleTimeout)
	})

	t.Run("PUT 503 then success", func(t *testing.T) {
		st.proxy.ResetStats()
		st.proxy.Set(faultproxy.Fault{Kind: faultproxy.Error, Method: "PUT", Status: 503, Code: "SlowDown", FirstN: 2})
		d2 := backendtest.RandomBytes(2, 1<<20)
		if _, err := st.b.Put(ctx, 43, bytes.NewReader(d2), backend.PutOptions{Size: int64(len(d2))}); err != nil {
			t.Fatal(err)
		}
		r, err := st.b.Get(ctx, 43, backend.Whole)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, d2) {
			t.Fatalf("read back: %v", err)
		}
		t.Logf("MEASURED PUT 503 x2: stored after %d PUTs", st.proxy.Count("PUT", key(43)))
	})

	exhausted := []struct {
		name  string
		fault faultproxy.Fault
		bound time.Duration
	}{
		{"503 forever", faultproxy.Fault{Kind: faultproxy.Error, Status: 503, Code: "SlowDown"}, 2 * time.Second},
		{"stall forever", faultproxy.Fault{Kind: faultproxy.Stall, After: 1000}, (maxRetries+1)*idleTimeout + 2*time.Second},
		{"reset forever", faultproxy.Fault{Kind: faultproxy.Reset, After: 1000}, 2 * time.Second},
	}
	for _, c := range exhausted {
		t.Run(c.name, func(t *testing.T) {
			st.proxy.ResetStats()
			f := c.fault
			f.Method, f.PathContains = "GET", key(id)
			st.proxy.Set(f)
			start := time.Now()
			_, err := readAll(backend.Whole)
			took := time.Since(start)
			if !errors.Is(err, backend.ErrUnavailable) {
				t.Fatalf("want ErrUnavailable after exhausting retries, got %v", err)
			}
			if gets := st.proxy.Count("GET", key(id)); gets != maxRetries+1 {
				t.Fatalf("%d GETs, want %d (max_retries+1)", gets, maxRetries+1)
			}
			if took > c.bound {
				t.Fatalf("failed after %v, bound %v", took, c.bound)
			}
			if strings.Contains(err.Error(), miniotest.SecretKey) {
				t.Fatal("secret in error")
			}
			t.Logf("MEASURED %s: error after %d GETs in %v: %v", c.name, maxRetries+1, took.Round(time.Millisecond), err)
		})
	}

	t.Run("corrupt byte", func(t *testing.T) {
		st.proxy.ResetStats()
		st.proxy.Set(faultproxy.Fault{Kind: faultproxy.Corrupt, Method: "GET", PathContains: key(id), After: 2<<20 + 5})
		got, err := readAll(backend.Whole)
		if err == nil {
			t.Fatalf("corrupted whole read returned %d bytes and no error", len(got))
		}
		if !errors.Is(err, segment.ErrChecksum) {
			t.Fatalf("want a checksum error, got %v", err)
		}
		t.Logf("MEASURED corrupt byte in every GET: %v after %d GETs", err, st.proxy.Count("GET", key(id)))
	})

	st.proxy.Clear()
	if got, err := readAll(backend.Whole); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after the storm: %d bytes, %v", len(got), err)
	}
	st.s3.Close()
	st.proxy.Close()
	deadline := time.Now().Add(5 * time.Second)
	var now int
	for {
		runtime.GC()
		now = runtime.NumGoroutine()
		if now <= baseline+2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if now > baseline+2 {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before the fault storm, %d after:\n%s", baseline, now, buf[:runtime.Stack(buf, true)])
	}
	t.Logf("MEASURED goroutines: %d before the fault storm, %d after", baseline, now)
}
