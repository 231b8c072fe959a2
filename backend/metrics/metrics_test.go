package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/segment"
)

func mustOpen(t *testing.T) *local.Backend {
	t.Helper()
	b, err := local.Open(filepath.Join(t.TempDir(), "hot.db"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return New(prometheus.NewRegistry()).Wrap(mustOpen(t), "cold")
	}, backendtest.Options{LargeSize: 3<<20 + 5})
}

func TestConformanceS3Wrapper(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return New(prometheus.NewRegistry()).WrapS3(mustOpen(t))
	}, backendtest.Options{LargeSize: 3<<20 + 5})
}

// TestCounts: each call is counted once under its operation and result,
// bytes read are those actually read, and S3 failures count as errors but
// not-found does not.
func TestCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	inner := mustOpen(t)
	defer inner.Close()
	b := m.Wrap(inner, "cold")
	s := m.WrapS3(inner)
	ctx := context.Background()
	data := bytes.Repeat([]byte("x"), 1000)
	if _, err := b.Put(ctx, 1, bytes.NewReader(data), backend.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	rc, err := b.Get(ctx, 1, backend.Whole)
	if err != nil {
		t.Fatal(err)
	}
	io.CopyN(io.Discard, rc, 300)
	rc.Close()
	b.Stat(ctx, 2)
	s.Stat(ctx, 2)
	s.Put(ctx, 3, strings.NewReader("short"), backend.PutOptions{Size: 99})
	m.OnRetry("get", 1, 1, errors.New("x"))

	for _, c := range []struct {
		what string
		got  float64
		want float64
	}{
		{"put ok", testutil.ToFloat64(m.ops.WithLabelValues("cold", "put", "ok")), 1},
		{"get ok", testutil.ToFloat64(m.ops.WithLabelValues("cold", "get", "ok")), 1},
		{"stat not_found", testutil.ToFloat64(m.ops.WithLabelValues("cold", "stat", "not_found")), 1},
		{"written bytes", testutil.ToFloat64(m.bytes.WithLabelValues("cold", "written")), 1000},
		{"read bytes", testutil.ToFloat64(m.bytes.WithLabelValues("cold", "read")), 300},
		{"s3 stat not_found", testutil.ToFloat64(m.s3Requests.WithLabelValues("stat", "not_found")), 1},
		{"s3 put invalid", testutil.ToFloat64(m.s3Requests.WithLabelValues("put", "invalid")), 1},
		{"s3 put errors", testutil.ToFloat64(m.s3Errors.WithLabelValues("put", "invalid")), 1},
		{"s3 stat errors", testutil.ToFloat64(m.s3Errors.WithLabelValues("stat", "not_found")), 0},
		{"retries", testutil.ToFloat64(m.s3Retries.WithLabelValues("get")), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.opDuration); n != 3 {
		t.Errorf("latency histograms: %d series, want 3 (put, get, stat)", n)
	}
}

func TestResult(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{fmt.Errorf("segment 1: %w", backend.ErrNotFound), "not_found"},
		{fmt.Errorf("x: %w", backend.ErrUnavailable), "unavailable"},
		{fmt.Errorf("x: %w", segment.ErrChecksum), "checksum"},
		{context.DeadlineExceeded, "deadline"},
		{errors.New("something secret-looking"), "other"},
	} {
		if got := Result(c.err); got != c.want {
			t.Errorf("Result(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestObserveOp(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.ObserveOp("hot", "read", time.Now().Add(-time.Millisecond), nil)
	if got := testutil.ToFloat64(m.ops.WithLabelValues("hot", "read", "ok")); got != 1 {
		t.Fatalf("hot read ok = %v", got)
	}
}
