package control

// Adversarial review of the control socket (put/get integrity, the socket's
// binding and peer checks, parameter bounds): inputs and interleavings the
// authors' tests do not name. Each test states the promise it attacks.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/cache"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// reviewServe serves api on a fresh socket and dials it.
func reviewServe(t *testing.T, api API) (string, *Client, chan error) {
	t.Helper()
	sig := &putSignal{API: api, puts: make(chan error, 16)}
	path := filepath.Join(t.TempDir(), "hot.db.sock")
	srv, err := Serve(path, sig, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, c, sig.puts
}

// reviewStore is a store over local hot and "cold" backends with cfg.
func reviewStore(t *testing.T, cfg tier.Config) *tier.Store {
	t.Helper()
	dir := t.TempDir()
	hot, err := local.Open(filepath.Join(dir, "hot.db"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cold, err := local.Open(filepath.Join(dir, "cold.db"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hot.Close(); cold.Close() })
	if cfg.ArchiveAfter == 0 {
		cfg.ArchiveAfter = time.Hour
	}
	s, err := tier.New(hot, hot.Index(), cold, cache.New(1<<20), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustGetBytes(t *testing.T, c API, id segment.ID) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Get(context.Background(), c, id, &buf); err != nil {
		t.Fatalf("get %d: %v", id, err)
	}
	return buf.Bytes()
}

// rawRequest sends head and body on a new connection and returns the whole
// reply (status line first), or what arrived before the server closed.
func rawRequest(t *testing.T, path, head string, body []byte) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, head+"\r\n")
	c.Write(body)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: strings.Fields(head)[0]})
	if err != nil {
		return "no reply: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Status + " " + string(b)
}

// TestReviewPutContentLengthWithTrailer: a PUT that is not chunked cannot
// carry a trailer. One that declares the trailer and puts a correct CRC32C
// in an ordinary header instead (an attempt to pass the check without an
// end marker) must publish nothing.
func TestReviewPutContentLengthWithTrailer(t *testing.T) {
	s := reviewStore(t, tier.Config{})
	path, c, _ := reviewServe(t, &Local{Store: s})
	old := []byte("old version")
	if _, err := c.Put(context.Background(), 3, bytes.NewReader(old), -1, time.Time{}); err != nil {
		t.Fatal(err)
	}
	data := backendtest.RandomBytes(30, 4000)
	for _, head := range []string{
		fmt.Sprintf("PUT /v1/segments/3 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTrailer: Scribefs-Crc32c\r\nScribefs-Crc32c: %s\r\n", len(data), crcOf(data)),
		fmt.Sprintf("PUT /v1/segments/3 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nTrailer: Scribefs-Crc32c\r\nScribefs-Size: %d\r\nScribefs-Crc32c: %s\r\n", len(data), len(data), crcOf(data)),
		fmt.Sprintf("PUT /v1/segments/3 HTTP/1.0\r\nContent-Length: %d\r\nTrailer: Scribefs-Crc32c\r\nScribefs-Crc32c: %s\r\n", len(data), crcOf(data)),
	} {
		reply := rawRequest(t, path, head, data)
		if strings.HasPrefix(reply, "200") {
			t.Fatalf("a non-chunked put was accepted: %q", reply)
		}
		if got := mustGetBytes(t, c, 3); !bytes.Equal(got, old) {
			t.Fatalf("after a refused non-chunked put segment 3 holds %d bytes, want the old %d (reply %q)", len(got), len(old), reply)
		}
	}
}

// TestReviewPutZeroSize: Scribefs-Size 0 with bytes in the body (and a
// trailer that sums them) must publish nothing; with no bytes it publishes
// an empty segment.
func TestReviewPutZeroSize(t *testing.T) {
	s := reviewStore(t, tier.Config{})
	path, c, puts := reviewServe(t, &Local{Store: s})
	old := []byte("old version")
	if _, err := c.Put(context.Background(), 4, bytes.NewReader(old), -1, time.Time{}); err != nil {
		t.Fatal(err)
	}
	<-puts
	data := []byte("ten bytes!")
	body := append(append(chunk(data), "0\r\n"...), "Scribefs-Crc32c: "+crcOf(data)+"\r\n\r\n"...)
	reply := rawRequest(t, path, "PUT /v1/segments/4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: Scribefs-Crc32c\r\nScribefs-Size: 0\r\n", body)
	if strings.HasPrefix(reply, "200") {
		t.Fatalf("10 bytes under Scribefs-Size 0 accepted: %q", reply)
	}
	if got := mustGetBytes(t, c, 4); !bytes.Equal(got, old) {
		t.Fatalf("segment 4 holds %q, want %q", got, old)
	}
	reply = rawRequest(t, path, "PUT /v1/segments/4 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: Scribefs-Crc32c\r\nScribefs-Size: 0\r\n",
		[]byte("0\r\nScribefs-Crc32c: "+crcOf(nil)+"\r\n\r\n"))
	if !strings.HasPrefix(reply, "200") {
		t.Fatalf("an empty whole body was refused: %q", reply)
	}
	if got := mustGetBytes(t, c, 4); len(got) != 0 {
		t.Fatalf("segment 4 holds %d bytes, want 0", len(got))
	}
}

// readFullStore is a store that consumes exactly the declared size with
// io.ReadFull and then stops reading (a store that "stops at the declared
// size", the case checkedBody's doc promises to cover: "a store that stops
// reading at the declared size still never sees an unchecked end").
type readFullStore struct {
	API
}

func (s readFullStore) Put(ctx context.Context, id segment.ID, r io.Reader, size int64, mtime time.Time) (segment.Info, error) {
	if size < 0 {
		return s.API.Put(ctx, id, r, size, mtime)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		return segment.Info{}, err
	}
	return s.API.Put(ctx, id, bytes.NewReader(buf), size, mtime)
}

// TestReviewPutStoreStopsAtDeclaredSize: the server's body must not let a
// store that reads exactly the declared size (io.ReadFull, the idiomatic
// way) publish a body whose trailer is wrong, missing, or that is longer
// than declared.
func TestReviewPutStoreStopsAtDeclaredSize(t *testing.T) {
	s := reviewStore(t, tier.Config{})
	path, c, puts := reviewServe(t, readFullStore{&Local{Store: s}})
	old := []byte("old version")
	if _, err := c.Put(context.Background(), 5, bytes.NewReader(old), -1, time.Time{}); err != nil {
		t.Fatal(err)
	}
	<-puts
	data := backendtest.RandomBytes(31, 3000)
	for _, tc := range []struct{ name, size, trailer string }{
		{"wrong CRC32C", "3000", "Scribefs-Crc32c: " + crcOf(data[1:]) + "\r\n"},
		{"no trailer", "3000", ""},
		{"longer than named", "2999", "Scribefs-Crc32c: " + crcOf(data) + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := append(append(chunk(data), "0\r\n"...), tc.trailer+"\r\n"...)
			reply := rawRequest(t, path, "PUT /v1/segments/5 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: Scribefs-Crc32c\r\nScribefs-Size: "+tc.size+"\r\n", body)
			<-puts
			if got := mustGetBytes(t, c, 5); !bytes.Equal(got, old) {
				t.Fatalf("a body with %s was published through a store that reads the declared size: segment 5 holds %d bytes (reply %q)", tc.name, len(got), reply)
			}
		})
	}
	// A whole body still goes through.
	body := append(append(chunk(data), "0\r\n"...), "Scribefs-Crc32c: "+crcOf(data)+"\r\n\r\n"...)
	reply := rawRequest(t, path, "PUT /v1/segments/5 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: Scribefs-Crc32c\r\nScribefs-Size: 3000\r\n", body)
	<-puts
	if got := mustGetBytes(t, c, 5); !bytes.Equal(got, data) {
		t.Fatalf("a whole body was not published: %q", reply)
	}
}

// TestReviewPutSizeHeaderHostile: out-of-range or malformed Scribefs-Size
// values are refused with a JSON error and publish nothing; the server
// never drops the connection without a reply (a panic in the handler).
func TestReviewPutSizeHeaderHostile(t *testing.T) {
	for _, max := range []int64{0, math.MaxInt64} {
		t.Run(fmt.Sprintf("max=%d", max), func(t *testing.T) {
			s := reviewStore(t, tier.Config{MaxSegmentBytes: max})
			path, c, _ := reviewServe(t, &Local{Store: s})
			old := []byte("old version")
			if _, err := c.Put(context.Background(), 6, bytes.NewReader(old), -1, time.Time{}); err != nil {
				t.Fatal(err)
			}
			data := []byte("short body")
			body := append(append(chunk(data), "0\r\n"...), "Scribefs-Crc32c: "+crcOf(data)+"\r\n\r\n"...)
			for _, size := range []string{"9223372036854775807", "9223372036854775808", "-1", "-9223372036854775808", "1e3", "0x10", "10 10", "+0x1"} {
				reply := rawRequest(t, path, "PUT /v1/segments/6 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: Scribefs-Crc32c\r\nScribefs-Size: "+size+"\r\n", body)
				if strings.HasPrefix(reply, "200") || strings.HasPrefix(reply, "no reply") || strings.HasPrefix(reply, "5") {
					t.Errorf("Scribefs-Size %q: %q; want a 4xx JSON error", size, reply)
				}
				if got := mustGetBytes(t, c, 6); !bytes.Equal(got, old) {
					t.Fatalf("Scribefs-Size %q: segment 6 holds %q", size, got)
				}
			}
		})
	}
}

// openHook runs fn once, after the first Read of an opened segment has
// returned (the server has bytes of the pinned version in hand and more to
// send).
type openHook struct {
	API
	once sync.Once
	fn   func()
}

type hookedObject struct {
	Object
	h *openHook
}

func (o *hookedObject) Read(p []byte) (int, error) {
	n, err := o.Object.Read(p[:min(len(p), 64<<10)])
	o.h.once.Do(o.h.fn)
	return n, err
}

func (h *openHook) Open(ctx context.Context, id segment.ID) (Object, error) {
	obj, err := h.API.Open(ctx, id)
	if err != nil {
		return nil, err
	}
	return &hookedObject{Object: obj, h: h}, nil
}

// TestReviewGetHotChangedMidTransfer: a hot segment overwritten, or
// deleted, after the server sent its first bytes: the get returns exactly
// the version it pinned, or fails; never success with other bytes.
func TestReviewGetHotChangedMidTransfer(t *testing.T) {
	ctx := context.Background()
	for _, change := range []string{"overwrite", "delete", "delete and put"} {
		t.Run(change, func(t *testing.T) {
			s := reviewStore(t, tier.Config{})
			v1 := backendtest.RandomBytes(40, 3*segment.BlockSize+11)
			v2 := backendtest.RandomBytes(41, 5*segment.BlockSize)
			if _, err := s.Put(ctx, 9, bytes.NewReader(v1), int64(len(v1)), time.Time{}); err != nil {
				t.Fatal(err)
			}
			h := &openHook{API: &Local{Store: s}, fn: func() {
				if change != "overwrite" {
					if err := s.Delete(ctx, 9); err != nil {
						panic(err)
					}
				}
				if change != "delete" {
					if _, err := s.Put(ctx, 9, bytes.NewReader(v2), int64(len(v2)), time.Time{}); err != nil {
						panic(err)
					}
				}
			}}
			_, c, _ := reviewServe(t, h)
			var buf bytes.Buffer
			_, err := Get(ctx, c, 9, &buf)
			if err == nil && !bytes.Equal(buf.Bytes(), v1) {
				t.Fatalf("get succeeded with %d bytes that are not the pinned version (%d bytes)", buf.Len(), len(v1))
			}
			if err != nil {
				t.Logf("get failed (allowed): %v", err)
			}
		})
	}
}

// TestReviewGetColdChangedMidTransfer (real MinIO): a cold segment
// overwritten in the bucket, or deleted, while the server streams it: the
// client gets the pinned version whole, or an error, never other bytes
// reported as success.
func TestReviewGetColdChangedMidTransfer(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	for _, change := range []string{"overwrite and archive", "delete"} {
		t.Run(change, func(t *testing.T) {
			cold, err := s3.New(ctx, s3.Config{Bucket: srv.NewBucket(t), Region: miniotest.Region, Endpoint: srv.Endpoint,
				AccessKeyID: miniotest.AccessKey, SecretAccessKey: miniotest.SecretKey, PathStyle: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cold.Close() })
			hot, err := local.Open(filepath.Join(t.TempDir(), "hot.db"), local.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { hot.Close() })
			s, err := tier.New(hot, hot.Index(), cold, cache.New(1<<20), tier.Config{ArchiveAfter: time.Hour,
				FetchSpan: segment.BlockSize, ReadAhead: 2 * segment.BlockSize, FetchParallel: 1})
			if err != nil {
				t.Fatal(err)
			}
			v1 := backendtest.RandomBytes(50, 24*segment.BlockSize+5)
			v2 := backendtest.RandomBytes(51, 24*segment.BlockSize+5)
			if _, err := s.Put(ctx, 11, bytes.NewReader(v1), int64(len(v1)), time.Time{}); err != nil {
				t.Fatal(err)
			}
			if err := s.Archive(ctx, 11); err != nil {
				t.Fatal(err)
			}
			if info, err := s.Stat(ctx, 11); err != nil || info.Tier != segment.TierCold {
				t.Fatalf("not cold after archive: %+v %v", info, err)
			}
			h := &openHook{API: &Local{Store: s}, fn: func() {
				if change == "delete" {
					if err := s.Delete(ctx, 11); err != nil {
						panic(err)
					}
					return
				}
				if _, err := s.Put(ctx, 11, bytes.NewReader(v2), int64(len(v2)), time.Time{}); err != nil {
					panic(err)
				}
				if err := s.Archive(ctx, 11); err != nil {
					panic(err)
				}
			}}
			_, c, _ := reviewServe(t, h)
			var buf bytes.Buffer
			_, err = Get(ctx, c, 11, &buf)
			if err == nil && !bytes.Equal(buf.Bytes(), v1) {
				t.Fatalf("get succeeded with %d bytes that are not the pinned version (equal to v2: %v)", buf.Len(), bytes.Equal(buf.Bytes(), v2))
			}
			t.Logf("get: %d bytes, err %v", buf.Len(), err)
		})
	}
}

// failingWriter takes n bytes, then fails.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errors.New("injected: no space left on device")
	}
	w.n -= len(p)
	return len(p), nil
}

// TestReviewGetWriterFails: a get whose output fails mid-way reports the
// failure (the CLI then never renames its output), and the server and the
// store are fine for the next get.
func TestReviewGetWriterFails(t *testing.T) {
	s := reviewStore(t, tier.Config{})
	_, c, _ := reviewServe(t, &Local{Store: s})
	data := backendtest.RandomBytes(60, 3*segment.BlockSize)
	if _, err := s.Put(context.Background(), 12, bytes.NewReader(data), int64(len(data)), time.Time{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1000, len(data) - 1} {
		if _, err := Get(context.Background(), c, 12, &failingWriter{n: n}); err == nil || !strings.Contains(err.Error(), "no space") {
			t.Fatalf("writer failing after %d bytes: get returned %v", n, err)
		}
	}
	if got := mustGetBytes(t, c, 12); !bytes.Equal(got, data) {
		t.Fatalf("get after failed gets: %d bytes", len(got))
	}
}

// runAs runs a python3 snippet as uid/gid 65534 and returns its output.
func runAs(t *testing.T, script string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", append([]string{"-c", script}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestReviewServerRefusesForeignPeer: even with its socket file opened to
// everyone (chmod 0777 by someone, or a directory that lets others reach
// it), the server answers no request from another user: the peer check.
func TestReviewServerRefusesForeignPeer(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to connect as another user")
	}
	s := reviewStore(t, tier.Config{})
	dir, err := os.MkdirTemp("", "scribefs-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "hot.db.sock")
	srv, err := Serve(path, &Local{Store: s}, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := s.Put(context.Background(), 1, strings.NewReader("secret"), 6, time.Time{}); err != nil {
		t.Fatal(err)
	}
	const client = `
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect refused:", e); sys.exit(0)
s.settimeout(10)
try:
    s.sendall(b"GET /v1/segments/1 HTTP/1.1\r\nHost: x\r\n\r\n")
except OSError as e:
    print("send error (the server closed the connection):", e); sys.exit(0)
data = b""
try:
    while True:
        b = s.recv(65536)
        if not b: break
        data += b
except OSError as e:
    print("recv error:", e)
print("reply:", repr(data))
`
	// As created: 0600, the other user cannot even connect.
	out, err := runAs(t, client, path)
	if err != nil || !strings.Contains(out, "connect refused") {
		t.Fatalf("other user on the 0600 socket: %s %v", out, err)
	}
	// Opened to everyone: the peer check must still refuse.
	os.Chmod(path, 0o777)
	out, err = runAs(t, client, path)
	if err != nil {
		t.Fatalf("%s %v", out, err)
	}
	if strings.Contains(out, "secret") || strings.Contains(out, "HTTP/1.1") {
		t.Fatalf("the server answered another user: %s", out)
	}
}

// TestReviewServeForeignThingsAtPath: things another user planted at the
// socket's path (the hot-tier directory writable by others): a symlink to
// their directory is replaced, never followed (nothing appears in their
// directory); their directory is refused and left alone; their live
// socket is refused (not taken over) and left alone.
func TestReviewServeForeignThingsAtPath(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to plant files as another user")
	}
	s := reviewStore(t, tier.Config{})
	dir, err := os.MkdirTemp("", "scribefs-plant-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o1777)
	path := filepath.Join(dir, "hot.db.sock")

	// A symlink to the other user's directory.
	theirs := filepath.Join(dir, "theirs")
	os.Mkdir(theirs, 0o777)
	os.Chown(theirs, 65534, 65534)
	os.Symlink(theirs, path)
	os.Lchown(path, 65534, 65534)
	srv, err := Serve(path, &Local{Store: s}, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("at the path after Serve: %v %v", fi, err)
	}
	if e, _ := os.ReadDir(theirs); len(e) != 0 {
		t.Fatalf("Serve created %v in the symlink's target", e)
	}
	srv.Close()

	// Their directory at the path.
	os.Remove(path)
	os.Mkdir(path, 0o777)
	os.Chown(path, 65534, 65534)
	if _, err := Serve(path, &Local{Store: s}, quietLog); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("a directory at the path: %v", err)
	}
	if fi, err := os.Lstat(path); err != nil || !fi.IsDir() {
		t.Fatalf("their directory was changed: %v %v", fi, err)
	}
	os.Remove(path)

	// Their live socket at the path.
	cmd := exec.Command("/usr/bin/python3", "-c", `
import socket, sys, os, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(5)
print("up", flush=True)
while True:
    c, _ = s.accept(); c.close()
`, path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "up\n" {
		t.Fatalf("their server: %q", line)
	}
	_, err = Serve(path, &Local{Store: s}, quietLog)
	if err == nil {
		t.Fatal("Serve took over another user's live socket")
	}
	t.Logf("their live socket: %v", err)
	if fi, err := os.Lstat(path); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Fatalf("their socket was replaced: %v %v", fi, err)
	}
}

// TestReviewServeReadOnlyDir: a hot-tier directory where no temp directory
// can be made: Serve fails with one error naming the socket's path, leaves
// nothing behind and does not panic.
func TestReviewServeReadOnlyDir(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a read-only tmpfs")
	}
	s := reviewStore(t, tier.Config{})
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount: %s %v", out, err)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	path := filepath.Join(dir, "hot.db.sock")
	_, err := Serve(path, &Local{Store: s}, quietLog)
	if err == nil {
		t.Fatal("Serve succeeded in a read-only directory")
	}
	if !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error: %q", err)
	}
	t.Logf("Serve in a read-only directory: %v", err)
}

// TestReviewRequestParameterEdges: parameters at and beyond their bounds.
// parallel=0 is the default (accepted); mtime_ns at the int64 extremes
// round-trips exactly or is refused with 400, never stored as something
// else.
func TestReviewRequestParameterEdges(t *testing.T) {
	s := reviewStore(t, tier.Config{})
	path, c, _ := reviewServe(t, &Local{Store: s})
	if _, err := c.Verify(context.Background(), VerifyOptions{Parallel: 0}, nil); err != nil {
		t.Fatalf("verify parallel=0 (default): %v", err)
	}
	for _, q := range []string{"parallel=64&parallel=100000", "parallel=%2B5", "parallel=1&repair=1&repair=x"} {
		reply := rawRequest(t, path, "POST /v1/verify?"+q+" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n", nil)
		t.Logf("verify?%s: %.80q", q, reply)
		if strings.HasPrefix(reply, "5") || strings.HasPrefix(reply, "no reply") {
			t.Errorf("verify?%s: %q", q, reply)
		}
	}
	for _, ns := range []int64{math.MinInt64, -1, math.MaxInt64} {
		data := []byte("x")
		body := append(append(chunk(data), "0\r\n"...), "Scribefs-Crc32c: "+crcOf(data)+"\r\n\r\n"...)
		reply := rawRequest(t, path, fmt.Sprintf("PUT /v1/segments/13?mtime_ns=%d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: Scribefs-Crc32c\r\n", ns), body)
		switch {
		case strings.HasPrefix(reply, "400"):
		case strings.HasPrefix(reply, "200"):
			info, err := c.Stat(context.Background(), 13)
			if err != nil {
				t.Fatal(err)
			}
			if got := info.ModTime.UnixNano(); got != ns {
				t.Errorf("mtime_ns=%d stored as %d (%v)", ns, got, info.ModTime)
			}
		default:
			t.Errorf("mtime_ns=%d: %q", ns, reply)
		}
	}
}

// TestReviewServeLongPath: a socket path that the kernel accepts (under
// 108 bytes) must still be servable. listenPrivate binds first at
// <dir>/.scribefs-sock-<digits>/s, up to 16 bytes longer than
// <dir>/hot.db.sock, so a hot-tier path that served before may now fail.
func TestReviewServeLongPath(t *testing.T) {
	s := reviewStore(t, tier.Config{})
	base := t.TempDir()
	// The longest socket path bind(2) takes: 107 bytes and the NUL.
	const name = "hot.db.sock"
	dir := base + "/" + strings.Repeat("d", 107-len(base)-2-len(name))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if len(path) != 107 {
		t.Fatalf("path of %d bytes", len(path))
	}
	// The same path, bound directly, works: the kernel's limit is met.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("the kernel refuses the path itself: %v", err)
	}
	ln.Close()
	os.Remove(path)
	srv, err := Serve(path, &Local{Store: s}, quietLog)
	if err != nil {
		t.Fatalf("Serve of a %d-byte socket path that bind(2) accepts: %v", len(path), err)
	}
	srv.Close()
}

// TestReviewPutLyingSizeMakesRoom: a put that names a size far larger than
// its body (and than the hot tier's budget) publishes nothing and loses
// nothing. It does make room for the size it named before reading a byte:
// the test logs what that did to a segment already hot (the old server
// trusted Content-Length the same way, so this is not new).
func TestReviewPutLyingSizeMakesRoom(t *testing.T) {
	s := reviewStore(t, tier.Config{HotMaxBytes: 1 << 20, FullWait: 300 * time.Millisecond})
	path, c, _ := reviewServe(t, &Local{Store: s})
	ctx := context.Background()
	kept := backendtest.RandomBytes(80, 100_000)
	if _, err := s.Put(ctx, 20, bytes.NewReader(kept), int64(len(kept)), time.Time{}); err != nil {
		t.Fatal(err)
	}
	old := []byte("old version")
	if _, err := s.Put(ctx, 21, bytes.NewReader(old), int64(len(old)), time.Time{}); err != nil {
		t.Fatal(err)
	}
	data := []byte("ten bytes!")
	body := append(append(chunk(data), "0\r\n"...), "Scribefs-Crc32c: "+crcOf(data)+"\r\n\r\n"...)
	start := time.Now()
	reply := rawRequest(t, path, "PUT /v1/segments/21 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: Scribefs-Crc32c\r\nScribefs-Size: 1073741824\r\n", body)
	took := time.Since(start)
	if strings.HasPrefix(reply, "200") {
		t.Fatalf("a 10-byte body named 1 GiB was accepted: %q", reply)
	}
	if got := mustGetBytes(t, c, 21); !bytes.Equal(got, old) {
		t.Fatalf("segment 21 holds %q", got)
	}
	if got := mustGetBytes(t, c, 20); !bytes.Equal(got, kept) {
		t.Fatalf("segment 20 changed: %d bytes", len(got))
	}
	info, _ := s.Stat(ctx, 20)
	t.Logf("reply after %v: %.90q; the untouched segment 20 is now in tier %v", took.Round(time.Millisecond), reply, info.Tier)
}

// TestReviewHeadAndUppercaseCRC: two inputs outside the client's own
// habits. HEAD of a segment (net/http routes it to the GET handler)
// should not fetch the segment's bytes from the cold tier only to discard
// them; an uppercase CRC32C in the trailer (the same sum) is the sender's
// spelling, not corruption. Both are logged, not asserted: the put is
// refused safely either way, and HEAD costs bandwidth, not data.
func TestReviewHeadAndUppercaseCRC(t *testing.T) {
	s := reviewStore(t, tier.Config{})
	path, c, _ := reviewServe(t, &Local{Store: s})
	ctx := context.Background()
	data := backendtest.RandomBytes(85, 4*segment.BlockSize)
	if _, err := s.Put(ctx, 30, bytes.NewReader(data), int64(len(data)), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Archive(ctx, 30); err != nil {
		t.Fatal(err)
	}
	before := s.Stats(ctx).ColdFetchBytes
	reply := rawRequest(t, path, "HEAD /v1/segments/30 HTTP/1.1\r\nHost: x\r\n", nil)
	headBytes := s.Stats(ctx).ColdFetchBytes - before
	before = s.Stats(ctx).ColdFetchBytes
	mustGetBytes(t, c, 30)
	t.Logf("HEAD: %.60q; cold bytes fetched for it: %d (a whole GET: %d; the segment: %d)", reply, headBytes, s.Stats(ctx).ColdFetchBytes-before, len(data))

	small := []byte("payload")
	up := strings.ToUpper(crcOf(small))
	body := append(append(chunk(small), "0\r\n"...), "Scribefs-Crc32c: "+up+"\r\n\r\n"...)
	reply = rawRequest(t, path, "PUT /v1/segments/31 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: Scribefs-Crc32c\r\n", body)
	t.Logf("put with the right CRC32C in uppercase (%s): %.120q", up, reply)
	if strings.HasPrefix(reply, "200") {
		if got := mustGetBytes(t, c, 31); !bytes.Equal(got, small) {
			t.Fatalf("segment 31 holds %q", got)
		}
	}
}
