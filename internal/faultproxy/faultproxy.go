// Package faultproxy is an HTTP reverse proxy that injects faults between an
// S3 client and a real S3 server (MinIO in the tests).
//
// A test points the client's endpoint at Proxy.URL and switches faults on
// and off with Set: added latency, a bandwidth cap, a connection reset or a
// clean close in the middle of a response body, a stall (no more bytes), a
// flipped byte in a GET body, an S3 error reply (500 InternalError, 503
// SlowDown, 403 AccessDenied, ...) with the XML body S3 sends, or a success
// the server would not have given (Accept). Each Fault
// says which requests it applies to (method, key substring, the first N
// matches, a probability). The proxy counts requests and injected faults so
// a test can assert how many attempts a client made.
//
// The Host header is passed through unchanged, so SigV4 signatures the
// client computed for the proxy's address stay valid at the server.
//
// It is test infrastructure: it must never be imported by scribefs itself.
package faultproxy

import (
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what a Fault does to a request.
type Kind int

const (
	// Latency delays the request by Fault.Delay before forwarding it.
	Latency Kind = iota + 1
	// Bandwidth caps the response body at Fault.BytesPerSec.
	Bandwidth
	// Reset forwards Fault.After bytes of the response body, then resets
	// the connection (TCP RST).
	Reset
	// Truncate forwards Fault.After bytes of the response body, then closes
	// the connection cleanly (FIN) short of the declared length.
	Truncate
	// Stall forwards Fault.After bytes of the response body (a negative
	// After stalls before the response headers) and then sends nothing until
	// the client gives up or the proxy closes.
	Stall
	// Corrupt flips one byte of a successful GET response body, at body
	// offset Fault.After (clamped to the body).
	Corrupt
	// Error answers with Fault.Status and an S3 XML error naming Fault.Code,
	// without contacting the server.
	Error
	// Accept answers 200 with an empty body and a made-up ETag, without
	// contacting the server: a store that accepts a request it should
	// refuse (a PUT whose If-None-Match it ignores).
	Accept
)

func (k Kind) String() string {
	switch k {
	case Latency:
		return "latency"
	case Bandwidth:
		return "bandwidth"
	case Reset:
		return "reset"
	case Truncate:
		return "truncate"
	case Stall:
		return "stall"
	case Corrupt:
		return "corrupt"
	case Error:
		return "error"
	case Accept:
		return "accept"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Fault is one switchable fault and the requests it applies to.
type Fault struct {
	Kind Kind

	// Method limits the fault to one HTTP method ("GET", "PUT", "HEAD",
	// ...); empty matches all.
	Method string
	// PathContains limits the fault to requests whose URL path contains it
	// (an object key, "segment-000000000000002a"); empty matches all.
	PathContains string
	// Query limits the fault to requests whose raw query contains it
	// ("uploadId", "list-type"); empty matches all.
	Query string
	// FirstN, when positive, applies the fault to the first N matching
	// requests only.
	FirstN int
	// Probability, when in (0, 1), applies the fault to that fraction of
	// matching requests; 0 means always.
	Probability float64

	Delay       time.Duration // Latency
	BytesPerSec int           // Bandwidth
	After       int64         // Reset, Truncate, Stall, Corrupt: body offset
	Status      int           // Error: HTTP status (default 503)
	Code        string        // Error: S3 error code (default SlowDown)
}

// rule is an active Fault and how many requests it has matched.
type rule struct {
	Fault
	matched atomic.Int64
}

// Stats are the proxy's counters since it started or since ResetStats.
type Stats struct {
	Requests int64            // requests received
	ByMethod map[string]int64 // requests per method
	Injected map[Kind]int64   // faults applied, per kind
}

// Proxy is a running fault-injecting proxy. Safe for concurrent use.
type Proxy struct {
	// URL is the proxy's base URL (http:// or https://) to use as the S3
	// endpoint.
	URL string

	srv    *httptest.Server
	rp     *httputil.ReverseProxy
	closed chan struct{}

	// mu guards faults and the counters.
	mu       sync.Mutex
	faults   []*rule
	requests int64
	byMethod map[string]int64
	injected map[Kind]int64
	log      []string // "METHOD path?query", in arrival order
}

// New starts a plain HTTP proxy to target (a base URL such as
// "http://127.0.0.1:9000").
func New(target string) (*Proxy, error) { return start(target, false) }

// NewTLS starts the proxy with TLS, using a self-signed certificate no
// client trusts: it terminates TLS and forwards plain HTTP to target.
func NewTLS(target string) (*Proxy, error) { return start(target, true) }

func start(target string, useTLS bool) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	if u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q is not a base URL", target)
	}
	p := &Proxy{closed: make(chan struct{}), byMethod: map[string]int64{}, injected: map[Kind]int64{}}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		Transport:     transport,
		FlushInterval: -1,
		// Aborted and cancelled requests are what the proxy is for.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		p.srv.StartTLS()
	} else {
		p.srv.Start()
	}
	p.URL = p.srv.URL
	return p, nil
}

// Close stops the proxy and releases anything stalled in it.
func (p *Proxy) Close() {
	select {
	case <-p.closed:
		return
	default:
	}
	close(p.closed)
	p.srv.CloseClientConnections()
	p.srv.Close()
	p.rp.Transport.(*http.Transport).CloseIdleConnections()
}

// Set replaces the active faults. The first fault that matches a request
// and fires is applied; the rest are not.
func (p *Proxy) Set(faults ...Fault) {
	fs := make([]*rule, len(faults))
	for i, f := range faults {
		fs[i] = &rule{Fault: f}
	}
	p.mu.Lock()
	p.faults = fs
	p.mu.Unlock()
}

// Clear removes every fault: the proxy forwards faithfully.
func (p *Proxy) Clear() { p.Set() }

// Stats returns a copy of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Requests: p.requests, ByMethod: map[string]int64{}, Injected: map[Kind]int64{}}
	for k, v := range p.byMethod {
		s.ByMethod[k] = v
	}
	for k, v := range p.injected {
		s.Injected[k] = v
	}
	return s
}

// Log returns "METHOD path?query" for every request so far, in order.
func (p *Proxy) Log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

// Count returns how many requests so far had method (empty: any) and a
// path containing pathContains (empty: any).
func (p *Proxy) Count(method, pathContains string) int {
	n := 0
	for _, l := range p.Log() {
		m, rest, _ := strings.Cut(l, " ")
		if (method == "" || m == method) && strings.Contains(rest, pathContains) {
			n++
		}
	}
	return n
}

// ResetStats zeroes the counters and the request log.
func (p *Proxy) ResetStats() {
	p.mu.Lock()
	p.requests = 0
	p.byMethod = map[string]int64{}
	p.injected = map[Kind]int64{}
	p.log = nil
	p.mu.Unlock()
}

// pick returns the fault to apply to r, or nil, and counts the request.
func (p *Proxy) pick(r *http.Request) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	p.byMethod[r.Method]++
	entry := r.Method + " " + r.URL.Path
	if r.URL.RawQuery != "" {
		entry += "?" + r.URL.RawQuery
	}
	p.log = append(p.log, entry)
	for _, f := range p.faults {
		if f.Method != "" && f.Method != r.Method {
			continue
		}
		if f.PathContains != "" && !strings.Contains(r.URL.Path, f.PathContains) {
			continue
		}
		if f.Query != "" && !strings.Contains(r.URL.RawQuery, f.Query) {
			continue
		}
		n := f.matched.Add(1)
		if f.FirstN > 0 && n > int64(f.FirstN) {
			continue
		}
		if f.Probability > 0 && f.Probability < 1 && rand.Float64() >= f.Probability {
			continue
		}
		p.injected[f.Kind]++
		return &f.Fault
	}
	return nil
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	f := p.pick(r)
	if f == nil {
		p.rp.ServeHTTP(w, r)
		return
	}
	switch f.Kind {
	case Latency:
		if !p.sleep(r.Context(), f.Delay) {
			return
		}
		p.rp.ServeHTTP(w, r)
	case Error:
		writeS3Error(w, r, f)
	case Accept:
		w.Header().Set("Connection", "close") // the request body is not read
		w.Header().Set("ETag", `"00000000000000000000000000000000"`)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	case Stall:
		if f.After < 0 {
			p.waitGone(r.Context())
			abort(w)
			return
		}
		p.serveFaulted(w, r, f)
	case Corrupt:
		if r.Method != http.MethodGet {
			p.rp.ServeHTTP(w, r)
			return
		}
		p.serveFaulted(w, r, f)
	default:
		p.serveFaulted(w, r, f)
	}
}

// sleep waits d, or until the client leaves or the proxy closes (false).
func (p *Proxy) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-p.closed:
	}
	return false
}

func (p *Proxy) waitGone(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-p.closed:
	}
}

// writeS3Error answers as S3 does when it refuses a request.
func writeS3Error(w http.ResponseWriter, r *http.Request, f *Fault) {
	status, code := f.Status, f.Code
	if status == 0 {
		status = http.StatusServiceUnavailable
	}
	if code == "" {
		code = "SlowDown"
	}
	body := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>%s</Code><Message>injected by faultproxy</Message><Resource>%s</Resource><RequestId>faultproxy</RequestId></Error>`,
		code, r.URL.Path)
	// The request body is not read; closing the connection afterwards
	// keeps an unread upload from confusing the next request on it.
	w.Header().Set("Connection", "close")
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-amz-request-id", "faultproxy")
	if status == http.StatusServiceUnavailable || code == "SlowDown" {
		w.Header().Set("Retry-After", "0")
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		io.WriteString(w, body)
	}
}

// abort hijacks the connection and resets it.
func abort(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// faultWriter applies a body fault to the response the reverse proxy
// writes.
type faultWriter struct {
	http.ResponseWriter
	p      *Proxy
	f      *Fault
	ctx    context.Context
	status int
	sent   int64
	done   bool // the fault has cut the response

	// mu guards finished (the handler has returned) and, for Flush, done
	// (the fault has hijacked the connection): the reverse proxy's flush
	// timer may fire after either, and flushing then would touch a writer
	// net/http has released.
	mu       sync.Mutex
	finished bool
}

// serveFaulted runs the reverse proxy through a faultWriter and marks it
// finished when the handler returns.
func (p *Proxy) serveFaulted(w http.ResponseWriter, r *http.Request, f *Fault) {
	fw := &faultWriter{ResponseWriter: w, p: p, f: f, ctx: r.Context()}
	defer func() {
		fw.mu.Lock()
		fw.finished = true
		fw.mu.Unlock()
	}()
	p.rp.ServeHTTP(fw, r)
}

func (fw *faultWriter) WriteHeader(status int) {
	fw.status = status
	fw.ResponseWriter.WriteHeader(status)
}

func (fw *faultWriter) Flush() {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.finished || fw.done {
		return
	}
	http.NewResponseController(fw.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the real writer.
func (fw *faultWriter) Unwrap() http.ResponseWriter { return fw.ResponseWriter }

var errCut = fmt.Errorf("faultproxy: response cut")

func (fw *faultWriter) Write(b []byte) (int, error) {
	if fw.done {
		return 0, errCut
	}
	if fw.status == 0 {
		fw.status = http.StatusOK
	}
	f := fw.f
	switch f.Kind {
	case Bandwidth:
		return fw.throttled(b)
	case Corrupt:
		if fw.status/100 != 2 {
			break
		}
		if at := f.After - fw.sent; at >= 0 && at < int64(len(b)) {
			c := append([]byte(nil), b...)
			c[at] ^= 0x5a
			n, err := fw.ResponseWriter.Write(c)
			fw.sent += int64(n)
			return n, err
		}
	case Reset, Truncate, Stall:
		if fw.sent+int64(len(b)) <= f.After {
			break
		}
		keep := max(f.After-fw.sent, 0)
		n, _ := fw.ResponseWriter.Write(b[:keep])
		fw.sent += int64(n)
		fw.Flush()
		// From here the connection is hijacked or held: the reverse
		// proxy's flush timer must not touch the response (see Flush).
		fw.mu.Lock()
		fw.done = true
		fw.mu.Unlock()
		switch f.Kind {
		case Stall:
			fw.p.waitGone(fw.ctx)
			abort(fw.ResponseWriter)
		case Reset:
			abort(fw.ResponseWriter)
		case Truncate:
			if conn, _, err := http.NewResponseController(fw.ResponseWriter).Hijack(); err == nil {
				conn.Close()
			}
		}
		return n, errCut
	}
	n, err := fw.ResponseWriter.Write(b)
	fw.sent += int64(n)
	return n, err
}

// throttled writes b at no more than f.BytesPerSec.
func (fw *faultWriter) throttled(b []byte) (int, error) {
	rate := max(fw.f.BytesPerSec, 1)
	chunk := max(rate/20, 1) // 50 ms worth
	written := 0
	for written < len(b) {
		n := min(chunk, len(b)-written)
		m, err := fw.ResponseWriter.Write(b[written : written+n])
		written += m
		fw.sent += int64(m)
		if err != nil {
			return written, err
		}
		fw.Flush()
		if !fw.p.sleep(fw.ctx, time.Duration(float64(m)/float64(rate)*float64(time.Second))) {
			return written, errCut
		}
	}
	return written, nil
}
