// Package metrics counts what the store does, for Prometheus.
//
// Two kinds of instrument live here. Wrap and WrapS3 are backend.Backend
// wrappers: they embed the interface, time every call and count it by
// operation and result, and pass it on unchanged. Wrap labels what it sees
// with a tier ("cold" above the retry wrapper: what the store asked for,
// retries included); WrapS3 sits below the retry wrapper, next to the S3
// backend, so it counts each request S3 actually received. ObserveOp is the
// same record for callers that are not backends (the mount's view of the
// tiered store, whose hot tier is a concrete bbolt type rather than a
// Backend). The tiered store's own counters are read at scrape time by a
// collector that cmd/scribefs registers (tier.Stats), so nothing is counted
// twice.
//
// The package registers on the Registerer it is given and never on the
// global default registry, so a test or a second store in one process gets
// clean series. It must not log, and it never sees configuration: secrets
// cannot reach a label.
package metrics

import (
	"context"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// Metrics holds the instruments of one store.
type Metrics struct {
	ops        *prometheus.CounterVec
	opDuration *prometheus.HistogramVec
	bytes      *prometheus.CounterVec
	s3Requests *prometheus.CounterVec
	s3Errors   *prometheus.CounterVec
	s3Retries  *prometheus.CounterVec
}

// latencyBuckets span a cached hot read (tens of microseconds) to a
// multi-gigabyte upload (minutes).
var latencyBuckets = prometheus.ExponentialBuckets(50e-6, 4, 12)

// New creates the instruments and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scribefs_operations_total",
			Help: "Store operations by tier (hot, cold), operation and result (ok or the error kind).",
		}, []string{"tier", "op", "result"}),
		opDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "scribefs_operation_duration_seconds",
			Help:    "Latency of store operations by tier and operation; cold includes retries.",
			Buckets: latencyBuckets,
		}, []string{"tier", "op"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scribefs_bytes_total",
			Help: "Segment bytes moved by tier and direction (read, written).",
		}, []string{"tier", "direction"}),
		s3Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scribefs_s3_requests_total",
			Help: "Requests to S3 by operation and result, each attempt counted (below the retry wrapper).",
		}, []string{"op", "result"}),
		s3Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scribefs_s3_errors_total",
			Help: "Failed S3 requests by operation and error kind (not_found is not counted as an error).",
		}, []string{"op", "kind"}),
		s3Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scribefs_s3_retries_total",
			Help: "S3 operations retried after a transient failure, by operation.",
		}, []string{"op"}),
	}
	reg.MustRegister(m.ops, m.opDuration, m.bytes, m.s3Requests, m.s3Errors, m.s3Retries)
	return m
}

// Result names an error's kind for a label (backend.Kind): "ok", or the
// kind of sentinel it wraps. The set is small and fixed, so labels never
// carry messages.
func Result(err error) string { return string(backend.Kind(err)) }

// ObserveOp records one operation that began at start and ended with err.
func (m *Metrics) ObserveOp(tier, op string, start time.Time, err error) {
	m.ops.WithLabelValues(tier, op, Result(err)).Inc()
	m.opDuration.WithLabelValues(tier, op).Observe(time.Since(start).Seconds())
}

// AddBytes counts n segment bytes moved in direction ("read" or "written").
func (m *Metrics) AddBytes(tier, direction string, n int64) {
	if n > 0 {
		m.bytes.WithLabelValues(tier, direction).Add(float64(n))
	}
}

// OnRetry counts a retry; its signature fits retry.Policy.OnRetry.
func (m *Metrics) OnRetry(op string, _ segment.ID, _ int, _ error) {
	m.s3Retries.WithLabelValues(op).Inc()
}

func (m *Metrics) observeS3(op string, _ time.Time, err error) {
	res := Result(err)
	m.s3Requests.WithLabelValues(op, res).Inc()
	if res != "ok" && res != "not_found" {
		m.s3Errors.WithLabelValues(op, res).Inc()
	}
}

// Wrap instruments b as tier: operations, latency and bytes.
func (m *Metrics) Wrap(b backend.Backend, tier string) backend.Backend {
	return &observed{
		Backend: b,
		observe: func(op string, start time.Time, err error) { m.ObserveOp(tier, op, start, err) },
		bytes:   func(dir string, n int64) { m.AddBytes(tier, dir, n) },
	}
}

// WrapS3 instruments the raw S3 backend, below retries: each call is one
// request (a multipart upload counts as one Put) and failures are counted by
// kind.
func (m *Metrics) WrapS3(b backend.Backend) backend.Backend {
	return &observed{Backend: b, observe: m.observeS3, bytes: func(string, int64) {}}
}

// observed embeds the wrapped backend; Close passes straight through.
type observed struct {
	backend.Backend
	observe func(op string, start time.Time, err error)
	bytes   func(direction string, n int64)
}

// Unwrap returns the wrapped backend, as the retry wrapper does.
func (o *observed) Unwrap() backend.Backend { return o.Backend }

func (o *observed) Put(ctx context.Context, id segment.ID, r io.Reader, opts backend.PutOptions) (segment.Info, error) {
	start := time.Now()
	info, err := o.Backend.Put(ctx, id, r, opts)
	o.observe("put", start, err)
	if err == nil {
		o.bytes("written", info.Size)
	}
	return info, err
}

// Get times opening the reader; the bytes are counted as they are read, so
// a reader abandoned early counts only what was used.
func (o *observed) Get(ctx context.Context, id segment.ID, opts backend.GetOptions) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := o.Backend.Get(ctx, id, opts)
	o.observe("get", start, err)
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, add: func(n int64) { o.bytes("read", n) }}, nil
}

func (o *observed) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	start := time.Now()
	info, err := o.Backend.Stat(ctx, id)
	o.observe("stat", start, err)
	return info, err
}

func (o *observed) Delete(ctx context.Context, id segment.ID, ifVersion string) error {
	start := time.Now()
	err := o.Backend.Delete(ctx, id, ifVersion)
	o.observe("delete", start, err)
	return err
}

func (o *observed) List(ctx context.Context, fn func(segment.Info) error) error {
	start := time.Now()
	err := o.Backend.List(ctx, fn)
	o.observe("list", start, err)
	return err
}

// countingReader reports bytes read; it keeps the wrapped reader's Version
// and WholeCRC32C methods visible to the retry wrapper, which pins resumed
// reads by the one and checks them by the other.
type countingReader struct {
	io.ReadCloser
	add func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.add(int64(n))
	return n, err
}

// Version passes the wrapped reader's version through, when it has one.
func (c *countingReader) Version() string {
	if v, ok := c.ReadCloser.(interface{ Version() string }); ok {
		return v.Version()
	}
	return ""
}

// WholeCRC32C passes the wrapped reader's whole-object check through.
func (c *countingReader) WholeCRC32C() (uint32, bool) {
	if v, ok := c.ReadCloser.(interface{ WholeCRC32C() (uint32, bool) }); ok {
		return v.WholeCRC32C()
	}
	return 0, false
}
