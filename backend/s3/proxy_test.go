package s3

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// newHTTPProxy starts an HTTP reverse proxy to target that lets a test alter
// requests and responses on their way. The Host header is passed through
// unchanged, so SigV4 signatures made for the proxy's address stay valid.
func newHTTPProxy(t *testing.T, target string, onRequest func(*http.Request), onResponse func(*http.Response) error) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
			if onRequest != nil {
				onRequest(pr.Out)
			}
		},
		ModifyResponse: onResponse,
		FlushInterval:  -1,
		// Cancelled requests are what these tests are about.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv
}

// stallingBody passes through the first `after` bytes of a body and then
// blocks until the request is cancelled: a server that stops sending.
type stallingBody struct {
	rc    io.ReadCloser
	after int64
	ctx   context.Context
}

func (s *stallingBody) Read(p []byte) (int, error) {
	if s.after <= 0 {
		<-s.ctx.Done()
		return 0, s.ctx.Err()
	}
	if int64(len(p)) > s.after {
		p = p[:s.after]
	}
	n, err := s.rc.Read(p)
	s.after -= int64(n)
	return n, err
}

func (s *stallingBody) Close() error { return s.rc.Close() }

// tricklingBody passes a body through with a pause before every chunk
// bytes: a slow server that never stops sending for long.
type tricklingBody struct {
	rc    io.ReadCloser
	chunk int
	pause time.Duration
	left  int // bytes until the next pause
}

func (s *tricklingBody) Read(p []byte) (int, error) {
	if s.left <= 0 {
		time.Sleep(s.pause)
		s.left = s.chunk
	}
	if len(p) > s.left {
		p = p[:s.left]
	}
	n, err := s.rc.Read(p)
	s.left -= n
	return n, err
}

func (s *tricklingBody) Close() error { return s.rc.Close() }

// tcpProxy forwards TCP connections to a target and counts them: how many
// were opened and how many were open at once. Each server-to-client write is
// delayed, so concurrent requests really overlap.
type tcpProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration

	mu     sync.Mutex // guards the counters and conns
	open   int
	most   int
	total  int
	conns  []net.Conn
	closed bool
}

func newTCPProxy(t *testing.T, target string, delay time.Duration) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, delay: delay}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) counts() (total, most int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total, p.most
}

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		p.open++
		p.total++
		p.most = max(p.most, p.open)
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() {
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(s, c); s.Close() }()
			go func() { defer wg.Done(); io.Copy(&slowWriter{c, p.delay}, s); c.Close() }()
			wg.Wait()
			p.mu.Lock()
			p.open--
			p.mu.Unlock()
		}()
	}
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

type slowWriter struct {
	w     io.Writer
	delay time.Duration
}

func (s *slowWriter) Write(b []byte) (int, error) {
	time.Sleep(s.delay)
	return s.w.Write(b)
}
