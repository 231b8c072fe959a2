package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var body = bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB

func mustProxy(t *testing.T) *Proxy {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", "1048576")
		w.Write(body)
	}))
	t.Cleanup(up.Close)
	p, err := New(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func get(t *testing.T, url string) ([]byte, int, error) {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{}}
	resp, err := c.Get(url)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

func TestPassThrough(t *testing.T) {
	p := mustProxy(t)
	b, code, err := get(t, p.URL+"/bucket/key")
	if err != nil || code != 200 || !bytes.Equal(b, body) {
		t.Fatalf("clean proxy: %d %d %v", len(b), code, err)
	}
	if s := p.Stats(); s.Requests != 1 || s.ByMethod["GET"] != 1 || len(s.Injected) != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestFaults(t *testing.T) {
	cases := []struct {
		f     Fault
		check func(b []byte, code int, err error, took time.Duration) string
	}{
		{Fault{Kind: Error, Status: 503, Code: "SlowDown"}, func(b []byte, code int, err error, _ time.Duration) string {
			if code != 503 || !strings.Contains(string(b), "<Code>SlowDown</Code>") {
				return "want a 503 SlowDown XML reply"
			}
			return ""
		}},
		{Fault{Kind: Reset, After: 1000}, func(b []byte, _ int, err error, _ time.Duration) string {
			if err == nil || len(b) != 1000 {
				return "want 1000 bytes then an error"
			}
			return ""
		}},
		{Fault{Kind: Truncate, After: 5000}, func(b []byte, _ int, err error, _ time.Duration) string {
			if !errors.Is(err, io.ErrUnexpectedEOF) || len(b) != 5000 {
				return "want 5000 bytes then unexpected EOF"
			}
			return ""
		}},
		{Fault{Kind: Corrupt, After: 4242}, func(b []byte, code int, err error, _ time.Duration) string {
			if err != nil || len(b) != len(body) || b[4242] == body[4242] || !bytes.Equal(b[:4242], body[:4242]) || !bytes.Equal(b[4243:], body[4243:]) {
				return "want exactly byte 4242 changed"
			}
			return ""
		}},
		{Fault{Kind: Stall, After: 100}, func(b []byte, _ int, err error, took time.Duration) string {
			if err == nil || len(b) != 100 || took < 2*time.Second {
				return "want 100 bytes then a stall until the client timeout"
			}
			return ""
		}},
		{Fault{Kind: Latency, Delay: 300 * time.Millisecond}, func(b []byte, _ int, err error, took time.Duration) string {
			if err != nil || !bytes.Equal(b, body) || took < 300*time.Millisecond {
				return "want the body after 300ms"
			}
			return ""
		}},
		{Fault{Kind: Bandwidth, BytesPerSec: 2 << 20}, func(b []byte, _ int, err error, took time.Duration) string {
			if err != nil || !bytes.Equal(b, body) || took < 400*time.Millisecond {
				return "want the body at about 2 MiB/s"
			}
			return ""
		}},
	}
	for _, c := range cases {
		t.Run(c.f.Kind.String(), func(t *testing.T) {
			p := mustProxy(t)
			p.Set(c.f)
			start := time.Now()
			b, code, err := get(t, p.URL+"/bucket/key")
			took := time.Since(start)
			if msg := c.check(b, code, err, took); msg != "" {
				t.Fatalf("%s: got %d bytes, status %d, err %v after %v", msg, len(b), code, err, took)
			}
			if p.Stats().Injected[c.f.Kind] != 1 {
				t.Fatalf("injected %v", p.Stats().Injected)
			}
		})
	}
}

func TestSelection(t *testing.T) {
	p := mustProxy(t)
	p.Set(Fault{Kind: Error, Method: "GET", PathContains: "/bad", FirstN: 2, Status: 500, Code: "InternalError"})
	codes := []int{}
	for _, path := range []string{"/good", "/bad", "/bad", "/bad"} {
		_, code, err := get(t, p.URL+path)
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, code)
	}
	if want := []int{200, 500, 500, 200}; !equal(codes, want) {
		t.Fatalf("codes %v, want %v", codes, want)
	}
	if n := p.Count("GET", "/bad"); n != 3 {
		t.Fatalf("count /bad = %d", n)
	}
	p.Clear()
	if _, code, _ := get(t, p.URL+"/bad"); code != 200 {
		t.Fatalf("after Clear: %d", code)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
