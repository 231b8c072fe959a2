package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// SocketPath is where a mount of the hot-tier file hotPath listens.
func SocketPath(hotPath string) string { return hotPath + ".sock" }

// Server serves an API on a unix socket.
type Server struct {
	path string
	ln   net.Listener
	http *http.Server
}

// Serve listens on path (replacing a stale socket file) and serves api.
func Serve(path string, api API, log *slog.Logger) (*Server, error) {
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another scribefs process is serving this store", path)
	}
	os.Remove(path)
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	s := &Server{path: path, ln: &peerCheckListener{Listener: ln, log: log}}
	mux := http.NewServeMux()
	h := &handler{api: api, log: log}
	mux.HandleFunc("GET /v1/segments", h.list)
	mux.HandleFunc("GET /v1/hot", h.hot)
	mux.HandleFunc("GET /v1/segments/{id}", h.get)
	mux.HandleFunc("GET /v1/segments/{id}/stat", h.stat)
	mux.HandleFunc("PUT /v1/segments/{id}", h.put)
	mux.HandleFunc("DELETE /v1/segments/{id}", h.delete)
	mux.HandleFunc("POST /v1/segments/{id}/archive", h.archive)
	mux.HandleFunc("GET /v1/health", h.health)
	mux.HandleFunc("GET /v1/status", h.status)
	mux.HandleFunc("POST /v1/verify", h.verify)
	s.http = &http.Server{Handler: mux, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go s.http.Serve(s.ln)
	return s, nil
}

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.http.Shutdown(ctx)
	os.Remove(s.path)
	return nil
}

// peerCheckListener drops connections from other users (root may connect).
type peerCheckListener struct {
	net.Listener
	log *slog.Logger
}

func (l *peerCheckListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && (uid == uint32(os.Getuid()) || uid == 0) {
			return c, nil
		}
		l.log.Warn("control socket: refused a connection from another user", "uid", uid)
		c.Close()
	}
}

func peerUID(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, errors.New("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var cerr error
	raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

type handler struct {
	api API
	log *slog.Logger
}

// logFailure records a failed request in the serving process's log (and so
// in status's recent errors). A missing segment is the caller's mistake,
// not the store's, and is not logged.
func (h *handler) logFailure(op string, id segment.ID, err error) {
	if err == nil || errors.Is(err, backend.ErrNotFound) || errors.Is(err, context.Canceled) {
		return
	}
	h.log.Warn("request failed", "op", op, "segment", id, "err", err)
}

func fail(w http.ResponseWriter, err error) {
	status, we := encodeError(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(we)
}

func pathID(w http.ResponseWriter, r *http.Request) (segment.ID, bool) {
	id, err := segment.ParseID(r.PathValue("id"))
	if err != nil {
		fail(w, err)
		return 0, false
	}
	return id, true
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	err := h.api.List(r.Context(), func(i segment.Info) error { return enc.Encode(toWire(i)) })
	if err != nil {
		// The status is sent already: a final error line tells the client.
		_, we := encodeError(err)
		enc.Encode(map[string]wireError{"error": we})
	}
}

func (h *handler) hot(w http.ResponseWriter, r *http.Request) {
	segs, err := h.api.HotSegments(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	out := make([]wireInfo, len(segs))
	for i, s := range segs {
		out[i] = toWire(s)
	}
	json.NewEncoder(w).Encode(out)
}

func (h *handler) stat(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	info, err := h.api.Stat(r.Context(), id)
	if err != nil {
		fail(w, err)
		return
	}
	json.NewEncoder(w).Encode(toWire(info))
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	info, err := h.api.Stat(r.Context(), id)
	if err != nil {
		h.logFailure("get", id, err)
		fail(w, err)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	// Errors after the first byte abort the connection; the client sees a
	// short body and reports it.
	if err := h.api.Get(r.Context(), id, w); err != nil {
		h.logFailure("get", id, err)
		panic(http.ErrAbortHandler)
	}
}

func (h *handler) put(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	var mtime time.Time
	if v := r.URL.Query().Get("mtime_ns"); v != "" {
		ns, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			fail(w, fmt.Errorf("bad mtime_ns %q", v))
			return
		}
		mtime = time.Unix(0, ns)
	}
	info, err := h.api.Put(r.Context(), id, r.Body, r.ContentLength, mtime)
	if err != nil {
		h.logFailure("put", id, err)
		fail(w, err)
		return
	}
	json.NewEncoder(w).Encode(toWire(info))
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	if id, ok := pathID(w, r); ok {
		err := h.api.Delete(r.Context(), id)
		h.logFailure("delete", id, err)
		h.done(w, err)
	}
}

func (h *handler) archive(w http.ResponseWriter, r *http.Request) {
	if id, ok := pathID(w, r); ok {
		err := h.api.Archive(r.Context(), id)
		h.logFailure("archive", id, err)
		h.done(w, err)
	}
}

func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	h.done(w, h.api.Health(r.Context()))
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	st, err := h.api.Status(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	json.NewEncoder(w).Encode(st)
}

func (h *handler) done(w http.ResponseWriter, err error) {
	if err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// verifyLine is one line of the streamed reply to /v1/verify: progress
// lines while it runs, then a report or an error.
type verifyLine struct {
	Done   *int          `json:"done,omitempty"`
	Total  int           `json:"total,omitempty"`
	Bytes  int64         `json:"bytes,omitempty"`
	Report *VerifyReport `json:"report,omitempty"`
	Error  *wireError    `json:"error,omitempty"`
}

func (h *handler) verify(w http.ResponseWriter, r *http.Request) {
	opts := VerifyOptions{Repair: r.URL.Query().Get("repair") == "1"}
	if v := r.URL.Query().Get("parallel"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			fail(w, fmt.Errorf("bad parallel %q", v))
			return
		}
		opts.Parallel = n
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(l verifyLine) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(l)
		if flusher != nil {
			flusher.Flush()
		}
	}
	// Progress is sent at most every 200ms: enough for a bar, cheap for a
	// million segments.
	var last time.Time
	rep, err := h.api.Verify(r.Context(), opts, func(done, total int, bytes int64) {
		mu.Lock()
		skip := time.Since(last) < 200*time.Millisecond && done != total
		if !skip {
			last = time.Now()
		}
		mu.Unlock()
		if !skip {
			send(verifyLine{Done: &done, Total: total, Bytes: bytes})
		}
	})
	if err != nil {
		_, we := encodeError(err)
		send(verifyLine{Error: &we})
		return
	}
	send(verifyLine{Report: &rep})
}
