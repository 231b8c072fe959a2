package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

// fakeServerEnv makes the test binary serve a false segment on the socket
// it names (TestClientRefusesForeignServer runs it as another user).
const fakeServerEnv = "SCRIBEFS_TEST_FAKE_SERVER"

func TestMain(m *testing.M) {
	if path := os.Getenv(fakeServerEnv); path != "" {
		serveFalseBytes(path)
		return
	}
	os.Exit(m.Run())
}

// serveFalseBytes answers every request with a plausible, false segment.
func serveFalseBytes(path string) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Chmod(path, 0o777)
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := []byte("false bytes")
		crc := newCRC()
		crc.Write(data)
		w.Header().Set("Trailer", trailerCRC)
		w.Header().Set(headerSize, fmt.Sprint(len(data)))
		w.Write(data)
		w.Header().Set(trailerCRC, crcString(crc))
	}))
}

// served is a store behind a real socket server, and a client of it.
type served struct {
	store  *tier.Store
	path   string
	client *Client
	puts   chan error // each Put the server ran, with its result
}

// putSignal reports each Put's result, so a test can wait until the server
// has finished with a request it cut.
type putSignal struct {
	API
	puts chan error
}

func (p *putSignal) Put(ctx context.Context, id segment.ID, r io.Reader, size int64, mtime time.Time) (segment.Info, error) {
	info, err := p.API.Put(ctx, id, r, size, mtime)
	p.puts <- err
	return info, err
}

func serve(t *testing.T, wrap func(API) API) *served {
	t.Helper()
	s, _ := mustStore(t)
	var api API = &Local{Store: s}
	if wrap != nil {
		api = wrap(api)
	}
	sig := &putSignal{API: api, puts: make(chan error, 16)}
	path := filepath.Join(t.TempDir(), "hot.db.sock")
	srv, err := Serve(path, sig, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &served{store: s, path: path, client: c, puts: sig.puts}
}

func (s *served) mustRead(t *testing.T, id segment.ID) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Get(context.Background(), s.client, id, &buf); err != nil {
		t.Fatalf("get %d: %v", id, err)
	}
	return buf.Bytes()
}

func (s *served) waitPut(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.puts:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the server never finished the put")
		return nil
	}
}

// rawPut sends a PUT by hand on a new connection: head, then body as
// written (already chunk-encoded when chunked), then closes the connection
// when cut, else reads the status line.
func rawPut(t *testing.T, path string, id segment.ID, head string, body []byte, cut bool) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PUT /v1/segments/%d HTTP/1.1\r\nHost: scribefs\r\n%s\r\n", id, head)
	c.Write(body)
	if cut {
		return ""
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

func chunk(b []byte) []byte {
	return append(fmt.Appendf(nil, "%x\r\n", len(b)), append(b, "\r\n"...)...)
}

func crcOf(b []byte) string {
	c := newCRC()
	c.Write(b)
	return crcString(c)
}

// TestPutCutMidBodyPublishesNothing: a client that goes away mid-body
// (killed, interrupted) must not publish the prefix it sent.
func TestPutCutMidBodyPublishesNothing(t *testing.T) {
	s := serve(t, nil)
	old := backendtest.RandomBytes(1, 3000)
	if _, err := s.client.Put(context.Background(), 5, bytes.NewReader(old), int64(len(old)), time.Time{}); err != nil {
		t.Fatal(err)
	}
	<-s.puts
	part := backendtest.RandomBytes(2, 1000)
	rawPut(t, s.path, 5, "Transfer-Encoding: chunked\r\nTrailer: Scribefs-Crc32c\r\n", chunk(part), true)
	if err := s.waitPut(t); err == nil {
		t.Fatal("the server accepted a body cut mid-way")
	}
	if got := s.mustRead(t, 5); !bytes.Equal(got, old) {
		t.Fatalf("after a cut put segment 5 holds %d bytes, want the old %d", len(got), len(old))
	}
	// The same with a declared length, cut before it.
	rawPut(t, s.path, 5, "Transfer-Encoding: chunked\r\nTrailer: Scribefs-Crc32c\r\nScribefs-Size: 5000\r\n", chunk(part), true)
	if err := s.waitPut(t); err == nil {
		t.Fatal("the server accepted a body of named length cut mid-way")
	}
	if got := s.mustRead(t, 5); !bytes.Equal(got, old) {
		t.Fatalf("after a cut put segment 5 holds %d bytes, want the old %d", len(got), len(old))
	}
}

// TestPutNeedsItsEndMarker: a body that ends without the CRC32C trailer,
// with a wrong one, or at another length than it named publishes nothing;
// a whole one publishes.
func TestPutNeedsItsEndMarker(t *testing.T) {
	s := serve(t, nil)
	old := backendtest.RandomBytes(3, 3000)
	if _, err := s.client.Put(context.Background(), 6, bytes.NewReader(old), -1, time.Time{}); err != nil {
		t.Fatal(err)
	}
	<-s.puts
	data := backendtest.RandomBytes(4, 2500)
	body := append(chunk(data[:1000]), chunk(data[1000:])...)
	for _, tc := range []struct {
		name, head, trailer string
	}{
		{"no trailer at all", "", ""},
		{"declared trailer missing", "Trailer: Scribefs-Crc32c\r\n", ""},
		{"wrong CRC32C", "Trailer: Scribefs-Crc32c\r\n", "Scribefs-Crc32c: " + crcOf(data[1:]) + "\r\n"},
		{"shorter than named", "Trailer: Scribefs-Crc32c\r\nScribefs-Size: 2501\r\n", "Scribefs-Crc32c: " + crcOf(data) + "\r\n"},
		{"longer than named", "Trailer: Scribefs-Crc32c\r\nScribefs-Size: 2499\r\n", "Scribefs-Crc32c: " + crcOf(data) + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status := rawPut(t, s.path, 6, "Transfer-Encoding: chunked\r\n"+tc.head, append(append(body, "0\r\n"...), tc.trailer+"\r\n"...), false)
			if strings.Contains(status, " 200 ") {
				t.Fatalf("server answered %q", status)
			}
			if got := s.mustRead(t, 6); !bytes.Equal(got, old) {
				t.Fatalf("segment 6 holds %d bytes, want the old %d", len(got), len(old))
			}
			// A request refused before its body was read runs no Put.
			select {
			case <-s.puts:
			default:
			}
		})
	}
	status := rawPut(t, s.path, 6, "Transfer-Encoding: chunked\r\nTrailer: Scribefs-Crc32c\r\nScribefs-Size: 2500\r\n",
		append(append(body, "0\r\n"...), "Scribefs-Crc32c: "+crcOf(data)+"\r\n\r\n"...), false)
	if !strings.Contains(status, " 200 ") {
		t.Fatalf("a whole body was refused: %q", status)
	}
	<-s.puts
	if got := s.mustRead(t, 6); !bytes.Equal(got, data) {
		t.Fatalf("segment 6 holds %d bytes, want the new %d", len(got), len(data))
	}
	// The sum's spelling is the sender's: uppercase hex is the same sum;
	// a trailer that is not a sum is an invalid request, not corruption.
	status = rawPut(t, s.path, 6, "Transfer-Encoding: chunked\r\nTrailer: Scribefs-Crc32c\r\n",
		append(append(body, "0\r\n"...), "Scribefs-Crc32c: "+strings.ToUpper(crcOf(data))+"\r\n\r\n"...), false)
	if !strings.Contains(status, " 200 ") {
		t.Fatalf("an uppercase CRC32C was refused: %q", status)
	}
	<-s.puts
	status = rawPut(t, s.path, 6, "Transfer-Encoding: chunked\r\nTrailer: Scribefs-Crc32c\r\n",
		append(append(body, "0\r\n"...), "Scribefs-Crc32c: xyz\r\n\r\n"...), false)
	if !strings.Contains(status, " 400 ") {
		t.Fatalf("a trailer that is no CRC32C: %q, want 400", status)
	}
	<-s.puts
}

// blockingReader gives n bytes, then blocks until its context ends.
type blockingReader struct {
	ctx context.Context
	r   io.Reader
	n   int
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		<-b.ctx.Done()
		return 0, b.ctx.Err()
	}
	p = p[:min(len(p), b.n)]
	n, err := b.r.Read(p)
	b.n -= n
	return n, err
}

// TestClientPut: the client's puts round-trip at any size, known or not;
// a source that fails or a context that ends mid-way publishes nothing.
func TestClientPut(t *testing.T) {
	s := serve(t, nil)
	ctx := context.Background()
	for i, n := range []int{0, 1, 5000, segment.BlockSize + 3} {
		data := backendtest.RandomBytes(int64(10+i), n)
		for _, size := range []int64{int64(n), -1} {
			if _, err := s.client.Put(ctx, 7, bytes.NewReader(data), size, time.Time{}); err != nil {
				t.Fatalf("put %d bytes (size %d): %v", n, size, err)
			}
			<-s.puts
			if got := s.mustRead(t, 7); !bytes.Equal(got, data) {
				t.Fatalf("put %d bytes (size %d): read back %d", n, size, len(got))
			}
		}
	}
	old := s.mustRead(t, 7)
	// The declared size and the source disagree.
	if _, err := s.client.Put(ctx, 7, bytes.NewReader(make([]byte, 100)), 200, time.Time{}); err == nil {
		t.Fatal("a source shorter than its size was published")
	}
	s.waitPut(t)
	// The source fails mid-way.
	bad := io.MultiReader(bytes.NewReader(make([]byte, 3000)), iotestErr{})
	if _, err := s.client.Put(ctx, 7, bad, -1, time.Time{}); err == nil {
		t.Fatal("a failing source was published")
	}
	s.waitPut(t)
	// The client gives up mid-way.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := s.client.Put(cctx, 7, &blockingReader{ctx: cctx, r: bytes.NewReader(make([]byte, 8000)), n: 4000}, -1, time.Time{})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let some bytes reach the server; either way nothing may publish
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a canceled put succeeded")
	}
	if err := s.waitPut(t); err == nil {
		t.Fatal("the server published a put whose client went away")
	}
	if got := s.mustRead(t, 7); !bytes.Equal(got, old) {
		t.Fatalf("after failed puts segment 7 holds %d bytes, want the old %d", len(got), len(old))
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("injected source failure") }

// overwriteOnOpen replaces the segment with a longer version right after
// the server looked at it, whichever way it looks: a stat (as the server
// did before) or an open.
type overwriteOnOpen struct {
	API
	store *tier.Store
	next  []byte
}

func (o *overwriteOnOpen) overwrite(ctx context.Context, id segment.ID) {
	if _, err := o.store.Put(ctx, id, bytes.NewReader(o.next), int64(len(o.next)), time.Time{}); err != nil {
		panic(err)
	}
}

func (o *overwriteOnOpen) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	info, err := o.API.Stat(ctx, id)
	o.overwrite(ctx, id)
	return info, err
}

func (o *overwriteOnOpen) Open(ctx context.Context, id segment.ID) (Object, error) {
	obj, err := o.API.Open(ctx, id)
	o.overwrite(ctx, id)
	return obj, err
}

// TestGetServesOnePinnedVersion: a get overwritten by a longer version
// between the server's look at the segment and the transfer returns one
// whole version, never a cut of the new one.
func TestGetServesOnePinnedVersion(t *testing.T) {
	v1 := backendtest.RandomBytes(20, 2*segment.BlockSize)
	v2 := backendtest.RandomBytes(21, 5*segment.BlockSize)
	var hook *overwriteOnOpen
	s := serve(t, func(api API) API {
		hook = &overwriteOnOpen{API: api, next: v2}
		return hook
	})
	hook.store = s.store
	if _, err := s.store.Put(context.Background(), 8, bytes.NewReader(v1), int64(len(v1)), time.Time{}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	info, err := Get(context.Background(), s.client, 8, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), v1) {
		t.Fatalf("get returned %d bytes (v1 has %d, v2 %d; equal to a prefix of v2: %v)",
			buf.Len(), len(v1), len(v2), bytes.HasPrefix(v2, buf.Bytes()))
	}
	if info.Size != int64(len(v1)) || info.Version == "" {
		t.Fatalf("info of the version served: %+v", info)
	}
}

// TestClientChecksTheReply: a reply cut short, longer than announced, or
// with a wrong or missing CRC32C is an error, never a whole segment.
func TestClientChecksTheReply(t *testing.T) {
	data := []byte("0123456789")
	for _, tc := range []struct {
		name string
		size int
		body []byte
		crc  string
	}{
		{"cut short", 10, data[:5], crcOf(data[:5])},
		{"longer", 5, data, crcOf(data)},
		{"wrong CRC32C", 10, data, crcOf(data[1:])},
		{"no trailer", 10, data, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s")
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", trailerCRC)
				w.Header().Set(headerSize, fmt.Sprint(tc.size))
				w.Write(tc.body)
				if tc.crc != "" {
					w.Header().Set(trailerCRC, tc.crc)
				}
			}))
			defer ln.Close()
			c, err := Dial(path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var buf bytes.Buffer
			if _, err := Get(context.Background(), c, 1, &buf); err == nil {
				t.Fatalf("a %s reply was taken as whole: %q", tc.name, buf.String())
			}
		})
	}
}

// TestClientRefusesForeignServer: a socket served by another user (one
// who could write the hot-tier directory) gets no request.
func TestClientRefusesForeignServer(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a server as another user")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "scribefs-foreign-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	bin := filepath.Join(dir, "control.test")
	raw, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "hot.db.sock")
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), fakeServerEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if i > 500 {
			t.Fatal("the other user's server never came up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, err := Dial(path)
	if err == nil {
		var buf bytes.Buffer
		_, gerr := Get(context.Background(), c, 1, &buf)
		c.Close()
		t.Fatalf("dialed a socket served by uid 65534; get returned %q, %v", buf.String(), gerr)
	}
	if !strings.Contains(err.Error(), "uid 65534") {
		t.Fatalf("error does not name the serving uid: %v", err)
	}
}

// TestServeSocketIsPrivate: the socket is mode 0600 from the start, a
// symlink at its path is replaced (its target untouched), and anything
// else in the way is refused with an error naming it.
func TestServeSocketIsPrivate(t *testing.T) {
	s, _ := mustStore(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "hot.db.sock")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := Serve(path, &Local{Store: s}, log)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket at %s: %v, %v", path, fi.Mode(), err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Fatalf("the symlink's target changed: %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("left behind in the directory: %v", entries)
	}
	srv.Close()
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Serve(path, &Local{Store: s}, log); err == nil || !strings.Contains(err.Error(), "regular file") {
		t.Fatalf("a regular file in the way: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "x" {
		t.Fatal("the file in the way was changed")
	}
}

// TestRequestParametersBounded: numeric and flag parameters out of range
// are refused with 400 `invalid` before any work starts (parallel=300000
// used to start 300,004 goroutines).
func TestRequestParametersBounded(t *testing.T) {
	s := serve(t, nil)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", s.path)
	}}}
	before := runtime.NumGoroutine()
	for _, q := range []string{
		"POST /v1/verify?parallel=300000", "POST /v1/verify?parallel=-1", "POST /v1/verify?parallel=65",
		"POST /v1/verify?parallel=x", "POST /v1/verify?repair=yes", "PUT /v1/segments/1?mtime_ns=soon",
	} {
		method, url, _ := strings.Cut(q, " ")
		req, _ := http.NewRequest(method, "http://scribefs"+url, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var we wireError
		json.NewDecoder(resp.Body).Decode(&we)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || we.Kind != "invalid" {
			t.Errorf("%s: %s, kind %q (%s); want 400 invalid", q, resp.Status, we.Kind, we.Message)
		}
	}
	if n := runtime.NumGoroutine(); n > before+20 {
		t.Fatalf("goroutines: %d before, %d after", before, n)
	}
	// In range, it runs.
	if _, err := s.client.Verify(context.Background(), VerifyOptions{Parallel: tier.MaxVerifyParallel}, nil); err != nil {
		t.Fatal(err)
	}
}
