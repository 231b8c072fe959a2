package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scribefs/scribefs/backend/metrics"
	"github.com/scribefs/scribefs/fs"
	"github.com/scribefs/scribefs/segment"
)

// observedStore is the mount's fs.Store with each filesystem operation
// counted and timed. It is where the hot tier is measured: tier.Store holds
// the hot tier as a concrete bbolt backend rather than a backend.Backend,
// so instead of wrapping it, operations are labelled here with the tier
// that served them (reads by the pinned version's tier, puts always hot;
// "store" when the store as a whole answered, as for a failed stat or a
// listing). The cold tier is measured again below, by the backend wrapper,
// as the S3 operations these cause.
type observedStore struct {
	fsStore
	m *metrics.Metrics
}

var _ fs.Store = observedStore{}

func tierLabel(i segment.Info, err error) string {
	if err == nil && i.Tier != 0 {
		return i.Tier.String()
	}
	return "store"
}

func (s observedStore) Open(ctx context.Context, id segment.ID) (fs.Reader, error) {
	start := time.Now()
	r, err := s.fsStore.Open(ctx, id)
	var info segment.Info
	if err == nil {
		info = r.Info()
	}
	s.m.ObserveOp(tierLabel(info, err), "open", start, err)
	if err != nil {
		return nil, err
	}
	return &observedReader{Reader: r, m: s.m, tier: info.Tier.String()}, nil
}

func (s observedStore) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	start := time.Now()
	info, err := s.fsStore.Stat(ctx, id)
	s.m.ObserveOp(tierLabel(info, err), "stat", start, err)
	return info, err
}

func (s observedStore) List(ctx context.Context, fn func(segment.Info) error) error {
	start := time.Now()
	err := s.fsStore.List(ctx, fn)
	s.m.ObserveOp("store", "list", start, err)
	return err
}

func (s observedStore) Put(ctx context.Context, id segment.ID, r io.Reader, size int64, mtime time.Time) (segment.Info, error) {
	start := time.Now()
	info, err := s.fsStore.Put(ctx, id, r, size, mtime)
	s.m.ObserveOp("hot", "put", start, err)
	if err == nil {
		s.m.AddBytes("hot", "written", info.Size)
	}
	return info, err
}

// PutStream is counted as a put; its time runs from the start of the
// writing (the stream starts while the file is still being written).
func (s observedStore) PutStream(ctx context.Context, id segment.ID, r io.Reader, mtime func() time.Time) (segment.Info, error) {
	start := time.Now()
	info, err := s.fsStore.PutStream(ctx, id, r, mtime)
	s.m.ObserveOp("hot", "put", start, err)
	if err == nil {
		s.m.AddBytes("hot", "written", info.Size)
	}
	return info, err
}

func (s observedStore) Delete(ctx context.Context, id segment.ID) error {
	start := time.Now()
	err := s.fsStore.Delete(ctx, id)
	s.m.ObserveOp("store", "delete", start, err)
	return err
}

func (s observedStore) Rename(ctx context.Context, from, to segment.ID) error {
	start := time.Now()
	err := s.fsStore.Rename(ctx, from, to)
	s.m.ObserveOp("store", "rename", start, err)
	return err
}

func (s observedStore) SetModTime(ctx context.Context, id segment.ID, mtime time.Time) error {
	start := time.Now()
	err := s.fsStore.SetModTime(ctx, id, mtime)
	s.m.ObserveOp("store", "setmtime", start, err)
	return err
}

// observedReader times each read by the tier of the version it pins.
type observedReader struct {
	fs.Reader
	m    *metrics.Metrics
	tier string
}

func (r *observedReader) ReadAt(p []byte, off int64) (int, error) {
	start := time.Now()
	n, err := r.Reader.ReadAt(p, off)
	res := err
	if errors.Is(err, io.EOF) {
		res = nil // a read reaching the end is a success
	}
	r.m.ObserveOp(r.tier, "read", start, res)
	r.m.AddBytes(r.tier, "read", int64(n))
	return n, err
}

// serveMetrics listens on addr now (so a taken port fails the mount at
// once) and serves reg at /metrics until the listener is closed.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return ln, nil
}
