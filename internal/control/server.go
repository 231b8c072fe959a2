package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	"github.com/scribefs/scribefs/tier"
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
//
// The socket is bound under a private directory beside path, given mode
// 0600 there and only then renamed to path: it is never reachable with
// looser permissions, the process-wide umask is left alone, and a symlink
// planted at path is replaced, never followed.
func Serve(path string, api API, log *slog.Logger) (*Server, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() == os.ModeSocket {
			if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
				uid, uerr := peerUID(c)
				c.Close()
				if uerr == nil && uid != uint32(os.Getuid()) {
					return nil, fmt.Errorf("control socket %s: a process of uid %d serves a socket there; remove it", path, uid)
				}
				return nil, fmt.Errorf("control socket %s: another scribefs process is serving this store", path)
			}
		} else if fi.Mode().Type() != os.ModeSymlink {
			return nil, fmt.Errorf("control socket %s: a %s is in the way (not a socket); remove it", path, fileKind(fi.Mode()))
		}
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	s := &Server{path: path, ln: &peerCheckListener{Listener: ln, log: log}}
	s.http = &http.Server{Handler: newMux(api, log), ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go s.http.Serve(s.ln)
	return s, nil
}

// newMux routes the API's requests to their handlers.
func newMux(api API, log *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	h := &handler{api: api, log: log}
	mux.HandleFunc("GET /v1/segments", h.list)
	mux.HandleFunc("GET /v1/hot", h.hot)
	mux.HandleFunc("GET /v1/segments/{id}", h.get)
	mux.HandleFunc("HEAD /v1/segments/{id}", h.head)
	mux.HandleFunc("GET /v1/segments/{id}/stat", h.stat)
	mux.HandleFunc("PUT /v1/segments/{id}", h.put)
	mux.HandleFunc("DELETE /v1/segments/{id}", h.delete)
	mux.HandleFunc("POST /v1/segments/{id}/archive", h.archive)
	mux.HandleFunc("GET /v1/health", h.health)
	mux.HandleFunc("GET /v1/status", h.status)
	mux.HandleFunc("POST /v1/verify", h.verify)
	return mux
}

// listenPrivate binds a unix socket at path without it ever being
// reachable by others: the socket's mode is set to 0600 (fchmod) before
// bind creates the file, which Linux creates with that mode, so neither the
// process-wide umask nor a temporary path is needed. A symlink or stale
// socket at path is removed first (unlink never follows a link); one planted
// again in between makes bind fail, it is never followed.
func listenPrivate(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != 0 && !fi.IsDir() {
		os.Remove(path)
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if err := syscall.Fchmod(fd, 0o600); err != nil {
		return nil, fmt.Errorf("fchmod: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	if err := syscall.Listen(fd, 128); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("listen: %w", err)
	}
	ln, err := net.FileListener(f)
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	// The mode bind gave was 0600 less the umask: never wider.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		os.Remove(path)
		return nil, err
	}
	return ln, nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	default:
		return "file of mode " + m.Type().String()
	}
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
	if err == nil || errors.Is(err, backend.ErrNotFound) {
		return
	}
	// A client that went away is worth a line only when it was writing:
	// the put it abandoned published nothing.
	if errors.Is(err, context.Canceled) && op != "put" {
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
	obj, err := h.api.Open(r.Context(), id)
	if err != nil {
		h.logFailure("get", id, err)
		fail(w, err)
		return
	}
	defer obj.Close()
	info := obj.Info()
	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Trailer", trailerCRC)
	hdr.Set(headerSize, strconv.FormatInt(info.Size, 10))
	hdr.Set(headerVersion, info.Version)
	hdr.Set(headerMtime, strconv.FormatInt(info.ModTime.UnixNano(), 10))
	w.WriteHeader(http.StatusOK)
	cw := &crcWriter{w: w, crc: newCRC()}
	n, err := io.CopyBuffer(cw, obj, make([]byte, 1<<20))
	if err == nil && n != info.Size {
		err = fmt.Errorf("segment %d: its pinned version gave %d of %d bytes", id, n, info.Size)
	}
	if err != nil {
		// Abort the connection: the client sees a cut body and no trailer.
		h.logFailure("get", id, err)
		panic(http.ErrAbortHandler)
	}
	hdr.Set(trailerCRC, crcString(cw.crc))
}

// head answers what a get would describe, without reading the segment.
func (h *handler) head(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	info, err := h.api.Stat(r.Context(), id)
	if err != nil {
		fail(w, err)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set(headerSize, strconv.FormatInt(info.Size, 10))
	hdr.Set(headerVersion, info.Version)
	hdr.Set(headerMtime, strconv.FormatInt(info.ModTime.UnixNano(), 10))
	w.WriteHeader(http.StatusOK)
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
			fail(w, fmt.Errorf("%w: bad mtime_ns %q", backend.ErrInvalid, v))
			return
		}
		mtime = time.Unix(0, ns)
	}
	// The body must name its own end (see integrity.go): publish only what
	// arrived whole with a matching CRC32C trailer.
	if _, ok := r.Trailer[trailerCRC]; !ok {
		fail(w, fmt.Errorf("put segment %d: %w: the request declares no %s trailer (is the client older than this mount?)", id, backend.ErrInvalid, trailerCRC))
		return
	}
	size, err := parseSize(r.Header)
	if err != nil {
		fail(w, err)
		return
	}
	if r.ContentLength >= 0 && size >= 0 && r.ContentLength != size {
		fail(w, fmt.Errorf("put segment %d: %w: Content-Length %d and %s %d disagree", id, backend.ErrInvalid, r.ContentLength, headerSize, size))
		return
	}
	body := &checkedBody{ctx: r.Context(), id: id, r: r.Body, trailer: r.Trailer, want: size, crc: newCRC()}
	info, err := h.api.Put(r.Context(), id, body, size, mtime)
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
	var opts VerifyOptions
	switch v := r.URL.Query().Get("repair"); v {
	case "", "0":
	case "1":
		opts.Repair = true
	default:
		fail(w, fmt.Errorf("verify: %w: repair %q: want 0 or 1", backend.ErrInvalid, v))
		return
	}
	if v := r.URL.Query().Get("parallel"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > tier.MaxVerifyParallel {
			fail(w, fmt.Errorf("verify: %w: parallel %q: want 1 to %d", backend.ErrInvalid, v, tier.MaxVerifyParallel))
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
