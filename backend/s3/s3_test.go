package s3

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
)

var ctx = context.Background()

// largeSize crosses the default 16 MiB multipart threshold: three 8 MiB
// parts, the last one short.
const largeSize = 20<<20 + 12345

// testConfig is a config for bucket on srv, reached at endpoint (the server
// itself, or a proxy in front of it).
func testConfig(endpoint, bucket string) Config {
	return Config{
		Bucket:          bucket,
		Region:          miniotest.Region,
		Endpoint:        endpoint,
		AccessKeyID:     miniotest.AccessKey,
		SecretAccessKey: miniotest.SecretKey,
		PathStyle:       true,
	}
}

func mustNew(t *testing.T, cfg Config) *Backend {
	t.Helper()
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New(%v): %v", cfg, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func newTestBackend(t *testing.T, srv *miniotest.Server, mutate func(*Config)) *Backend {
	t.Helper()
	cfg := testConfig(srv.Endpoint, srv.NewBucket(t))
	if mutate != nil {
		mutate(&cfg)
	}
	return mustNew(t, cfg)
}

func TestConformance(t *testing.T) {
	srv := miniotest.Start(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return newTestBackend(t, srv, nil)
	}, backendtest.Options{LargeSize: largeSize})
}

// TestConformanceSmallParts runs the suite with 5 MiB parts, a 5 MiB
// threshold and two uploaders, so that more of it goes through multipart
// uploads with more parts than uploaders and buffers.
func TestConformanceSmallParts(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	srv := miniotest.Start(t)
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return newTestBackend(t, srv, func(c *Config) {
			c.MultipartThreshold, c.PartSize, c.Concurrency = 5<<20, 5<<20, 2
		})
	}, backendtest.Options{LargeSize: 17<<20 + 3})
}

func TestConfigDefaultsAndValidation(t *testing.T) {
	c, err := Config{Bucket: "b"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.PoolSize != 10 || c.Timeout != 30*time.Second || c.Prefix != "segments/" ||
		c.MultipartThreshold != 16<<20 || c.PartSize != 8<<20 || c.Concurrency != 4 {
		t.Fatalf("defaults: %+v", c)
	}
	if c, _ := (Config{Bucket: "b", Endpoint: "minio:9000"}).withDefaults(); c.Endpoint != "https://minio:9000" {
		t.Fatalf("endpoint without scheme became %q", c.Endpoint)
	}
	for _, bad := range []Config{
		{},
		{Bucket: "b", AccessKeyID: "k"},
		{Bucket: "b", SecretAccessKey: "s"},
		{Bucket: "b", PartSize: 5<<20 + 1},
		{Bucket: "b", PartSize: 4 << 20},
		{Bucket: "b", PartSize: 6 << 30},
		{Bucket: "b", MultipartThreshold: -1},
		{Bucket: "b", MultipartThreshold: 6 << 30},
		{Bucket: "b", PoolSize: -1},
		{Bucket: "b", Concurrency: -2},
	} {
		if _, err := New(ctx, bad); !errors.Is(err, backend.ErrInvalid) {
			t.Errorf("New(%v): %v, want ErrInvalid", bad, err)
		}
	}
	secret := "do-not-print-me"
	cfg := Config{Bucket: "b", AccessKeyID: "k", SecretAccessKey: secret}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
		if strings.Contains(s, secret) {
			t.Errorf("formatted config leaks the secret: %s", s)
		}
	}
}

func TestPartSize(t *testing.T) {
	b := &Backend{cfg: Config{PartSize: 8 << 20}}
	for _, size := range []int64{0, 20 << 20, 80 << 30, 80<<30 + 1, 1 << 40, 5 << 40} {
		ps := b.partSize(size, 1)
		if ps%segment.BlockSize != 0 || ps < 8<<20 || ps > maxPartSize {
			t.Errorf("size %d: part size %d", size, ps)
		}
		if parts := (size + ps - 1) / ps; parts > maxParts {
			t.Errorf("size %d: %d parts of %d", size, parts, ps)
		}
	}
	// Unknown size: growing parts reach far beyond 10,000 x 8 MiB.
	var total int64
	for n := int32(1); n <= maxParts; n++ {
		ps := b.partSize(-1, n)
		if ps%segment.BlockSize != 0 || ps > maxPartSize || ps < b.partSize(-1, max(n-1, 1)) {
			t.Fatalf("part %d: size %d", n, ps)
		}
		total += ps
	}
	if total < 400<<30 {
		t.Errorf("unknown-size uploads stop at %d GiB", total>>30)
	}
}

func TestHealth(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)

	if err := mustNew(t, testConfig(srv.Endpoint, bucket)).Health(ctx); err != nil {
		t.Fatalf("healthy store: %v", err)
	}

	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()

	const wrongSecret = "wrong-secret-3f9a7c1e"
	wrongKey := testConfig(srv.Endpoint, bucket)
	wrongKey.AccessKeyID = "no-such-key"
	cases := []struct {
		name     string
		cfg      Config
		want     string
		sentinel error
	}{
		{"wrong secret", func() Config { c := testConfig(srv.Endpoint, bucket); c.SecretAccessKey = wrongSecret; return c }(),
			"credentials rejected by " + srv.Endpoint + ": SignatureDoesNotMatch", backend.ErrPermission},
		{"unknown key", wrongKey, "credentials rejected by " + srv.Endpoint + ": InvalidAccessKeyId", backend.ErrPermission},
		{"missing bucket", testConfig(srv.Endpoint, "no-such-bucket"), "bucket no-such-bucket does not exist", backend.ErrInvalid},
		{"closed port", testConfig(closed, bucket), "cannot reach " + closed + ": connection refused", backend.ErrUnavailable},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := mustNew(t, c.cfg)
			start := time.Now()
			err := b.Health(ctx)
			if took := time.Since(start); took > 6*time.Second {
				t.Errorf("health took %v", took)
			}
			if err == nil {
				t.Fatal("health passed")
			}
			msg := err.Error()
			t.Logf("%s: %s", c.name, msg)
			if !strings.HasPrefix(msg, c.want) {
				t.Errorf("message %q does not start with %q", msg, c.want)
			}
			if !errors.Is(err, c.sentinel) {
				t.Errorf("error does not wrap %v", c.sentinel)
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("message is not one line: %q", msg)
			}
			if strings.Contains(msg, wrongSecret) || strings.Contains(msg, miniotest.SecretKey) {
				t.Errorf("message contains a secret: %q", msg)
			}
			var apiErr smithy.APIError
			if errors.As(err, &apiErr) {
				t.Errorf("an SDK error type escaped: %T", apiErr)
			}
		})
		seen[c.want] = true
	}
	if len(seen) != len(cases) {
		t.Fatal("health messages are not distinct")
	}
}

// TestSecretNeverInErrors drives every operation into failure with a wrong
// secret and with a missing bucket, and checks no message holds a secret.
func TestSecretNeverInErrors(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	const wrongSecret = "wrong-secret-d41d8cd98f00"
	wrong := testConfig(srv.Endpoint, bucket)
	wrong.SecretAccessKey = wrongSecret
	for _, cfg := range []Config{wrong, testConfig(srv.Endpoint, "no-such-bucket")} {
		b := mustNew(t, cfg)
		var errs []error
		_, err := b.Put(ctx, 1, bytes.NewReader([]byte("x")), backend.PutOptions{Size: 1})
		errs = append(errs, err)
		_, err = b.Put(ctx, 2, bytes.NewReader(make([]byte, largeSize)), backend.PutOptions{Size: largeSize})
		errs = append(errs, err)
		_, err = b.Get(ctx, 1, backend.Whole)
		errs = append(errs, err)
		_, err = b.Stat(ctx, 1)
		errs = append(errs, err)
		errs = append(errs, b.Delete(ctx, 1, ""), b.List(ctx, func(segment.Info) error { return nil }), b.Health(ctx))
		_, err = b.AbortIncompleteUploads(ctx, time.Now())
		errs = append(errs, err)
		for i, err := range errs {
			if err == nil {
				t.Fatalf("%s: operation %d succeeded", cfg.SecretAccessKey, i)
			}
			msg := err.Error()
			if strings.Contains(msg, wrongSecret) || strings.Contains(msg, miniotest.SecretKey) {
				t.Errorf("operation %d: message contains a secret: %q", i, msg)
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("operation %d: message is not one line: %q", i, msg)
			}
			if i != 6 && !strings.HasPrefix(msg, "s3 ") { // 6, Health, has its own wording
				t.Errorf("operation %d: message does not name the operation: %q", i, msg)
			}
		}
		if cfg.SecretAccessKey == wrongSecret {
			if !errors.Is(errs[0], backend.ErrPermission) || !strings.Contains(errs[0].Error(), "credentials rejected") {
				t.Errorf("put with a wrong secret: %v", errs[0])
			}
		} else if !errors.Is(errs[2], backend.ErrInvalid) || errors.Is(errs[2], backend.ErrNotFound) ||
			!strings.Contains(errs[2].Error(), "bucket no-such-bucket does not exist") {
			t.Errorf("get from a missing bucket: %v", errs[2])
		}
	}
}

func TestErrorMessagesNameOperation(t *testing.T) {
	srv := miniotest.Start(t)
	b := newTestBackend(t, srv, nil)
	_, err := b.Get(ctx, 42, backend.Whole)
	if want := "s3 get segment 42: not found"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("get missing: %v, want prefix %q", err, want)
	}
	err = b.Delete(ctx, 42, "")
	if want := "s3 delete segment 42: not found"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("delete missing: %v, want prefix %q", err, want)
	}
}

// TestClassify covers failures MinIO cannot produce on demand.
func TestClassify(t *testing.T) {
	b := &Backend{cfg: Config{Bucket: "bkt", Endpoint: "https://s3.example", SecretAccessKey: "sekrit"}}
	api := func(code string) error { return &smithy.GenericAPIError{Code: code, Message: "msg"} }
	cases := []struct {
		err      error
		sentinel error
		text     string
	}{
		{api("NoSuchKey"), backend.ErrNotFound, "not found"},
		{api("NoSuchBucket"), backend.ErrInvalid, "bucket bkt does not exist"},
		{api("PreconditionFailed"), backend.ErrStale, "version changed"},
		{api("AccessDenied"), backend.ErrPermission, "permission denied"},
		{api("InvalidAccessKeyId"), backend.ErrPermission, "credentials rejected by https://s3.example"},
		{api("SignatureDoesNotMatch"), backend.ErrPermission, "credentials rejected"},
		{api("InvalidObjectState"), backend.ErrPermission, "archived"},
		{api("SlowDown"), backend.ErrUnavailable, "unavailable"},
		{api("InternalError"), backend.ErrUnavailable, "unavailable"},
		{api("EntityTooLarge"), backend.ErrTooLarge, "too large"},
		{api("BadDigest"), segment.ErrChecksum, "checksum mismatch in transit"},
		{api("InvalidArgument"), backend.ErrInvalid, "invalid"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, backend.ErrUnavailable, "cannot reach https://s3.example: connection refused"},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, backend.ErrUnavailable, "connection reset"},
		{fmt.Errorf("reading body: %w", io.ErrUnexpectedEOF), backend.ErrUnavailable, "unavailable"},
		{&idleError{time.Second}, backend.ErrUnavailable, "idle timeout"},
		{fmt.Errorf("op: %w", context.Canceled), context.Canceled, "context canceled"},
		{errors.New("weird sekrit failure"), nil, "weird REDACTED failure"},
	}
	for _, c := range cases {
		err := b.fail("get segment 7", c.err)
		msg := err.Error()
		if !strings.HasPrefix(msg, "s3 get segment 7: ") || !strings.Contains(msg, c.text) {
			t.Errorf("%v: message %q, want one containing %q", c.err, msg, c.text)
		}
		if c.sentinel != nil && !errors.Is(err, c.sentinel) {
			t.Errorf("%v: %q does not wrap %v", c.err, msg, c.sentinel)
		}
		if backend.IsTransient(err) != (c.sentinel == backend.ErrUnavailable || c.sentinel == segment.ErrChecksum) {
			t.Errorf("%v: transient = %v", c.err, backend.IsTransient(err))
		}
	}
	// A HEAD reply has a status and no code.
	for status, want := range map[int]kind{404: kindNotFound, 412: kindStale, 403: kindDenied, 503: kindUnavailable, 429: kindUnavailable, 400: kindInvalid, 416: kindInvalidRange} {
		if got := classifyAPI("", status); got != want {
			t.Errorf("status %d: kind %d, want %d", status, got, want)
		}
	}
}

// TestMultipart checks how large segments are stored: a full-object CRC32C
// the store verified, every part sent with its own CRC32C, and block sums in
// the metadata whenever they can be known up front.
func TestMultipart(t *testing.T) {
	srv := miniotest.Start(t)
	var mu sync.Mutex
	var partsSeen, partsOK int
	inspect := func(r *http.Request) {
		if r.Method != http.MethodPut || r.URL.Query().Get("partNumber") == "" {
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		mu.Lock()
		partsSeen++
		if r.Header.Get("X-Amz-Checksum-Crc32c") == crcBase64(segment.CRC32C(body)) {
			partsOK++
		}
		mu.Unlock()
	}
	bucket := srv.NewBucket(t)
	proxy := newHTTPProxy(t, srv.Endpoint, inspect, nil)
	b := mustNew(t, testConfig(proxy.URL, bucket))
	data := backendtest.RandomBytes(1, largeSize)
	want := segment.Sum(data)

	type source struct {
		name       string
		r          io.Reader
		opts       backend.PutOptions
		wantBlocks bool
	}
	for i, s := range []source{
		{"seekable", bytes.NewReader(data), backend.PutOptions{Size: -1}, true},
		{"unseekable with sums", io.MultiReader(bytes.NewReader(data)), backend.PutOptions{Size: largeSize, Sums: want}, true},
		// Sums not known when the upload starts go to the companion
		// object, written before the upload completes.
		{"unseekable without sums", io.MultiReader(bytes.NewReader(data)), backend.PutOptions{Size: -1}, true},
	} {
		id := segment.ID(i + 1)
		info, err := b.Put(ctx, id, s.r, s.opts)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !info.Sums.Equal(want) {
			t.Fatalf("%s: put returned sums %v", s.name, info.Sums)
		}
		head, err := srv.Client().HeadObject(ctx, &s3api.HeadObjectInput{Bucket: &bucket, Key: aws.String(b.key(id)), ChecksumMode: types.ChecksumModeEnabled})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(aws.ToString(head.ETag), `-3"`) {
			t.Errorf("%s: ETag %s, want a 3-part upload", s.name, aws.ToString(head.ETag))
		}
		if head.ChecksumType != types.ChecksumTypeFullObject || aws.ToString(head.ChecksumCRC32C) != crcBase64(want.Whole) {
			t.Errorf("%s: store checksum %s %s, want FULL_OBJECT %s", s.name, head.ChecksumType, aws.ToString(head.ChecksumCRC32C), crcBase64(want.Whole))
		}
		st, err := b.Stat(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Sums == nil || st.Sums.Whole != want.Whole {
			t.Errorf("%s: stat whole sum %v, want %v", s.name, st.Sums, want)
		}
		if s.wantBlocks && !st.Sums.Equal(want) {
			t.Errorf("%s: stat block sums %v, want all %d", s.name, st.Sums, len(want.Blocks))
		}
		if !s.wantBlocks && st.Sums != nil && st.Sums.Blocks != nil {
			t.Errorf("%s: stat invented block sums", s.name)
		}
	}
	mu.Lock()
	if partsSeen != 9 || partsOK != partsSeen {
		t.Errorf("%d of %d parts carried their CRC32C, want 9 of 9", partsOK, partsSeen)
	}
	mu.Unlock()
}

// TestPartChecksumVerified makes the store report a wrong CRC32C for one part
// and checks that Put notices, fails, and leaves nothing behind.
func TestPartChecksumVerified(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	tamper := func(resp *http.Response) error {
		if resp.Request.URL.Query().Get("partNumber") == "2" && resp.Header.Get("X-Amz-Checksum-Crc32c") != "" {
			resp.Header.Set("X-Amz-Checksum-Crc32c", crcBase64(12345))
		}
		return nil
	}
	proxy := newHTTPProxy(t, srv.Endpoint, nil, tamper)
	b := mustNew(t, testConfig(proxy.URL, bucket))
	_, err := b.Put(ctx, 3, bytes.NewReader(backendtest.RandomBytes(2, largeSize)), backend.PutOptions{Size: largeSize})
	if !errors.Is(err, segment.ErrChecksum) || !backend.IsTransient(err) || !strings.Contains(err.Error(), "part 2") {
		t.Fatalf("put with a tampered part checksum: %v", err)
	}
	if _, err := b.Stat(ctx, 3); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("stat after failed put: %v", err)
	}
	assertNoUploads(t, srv, bucket)

	// A body damaged on the way is refused by the store.
	corrupt := func(r *http.Request) {
		if r.URL.Query().Get("partNumber") != "1" {
			return
		}
		body, _ := io.ReadAll(r.Body)
		body[len(body)/2] ^= 0xff
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	proxy2 := newHTTPProxy(t, srv.Endpoint, corrupt, nil)
	b2 := mustNew(t, testConfig(proxy2.URL, bucket))
	_, err = b2.Put(ctx, 4, bytes.NewReader(backendtest.RandomBytes(3, largeSize)), backend.PutOptions{Size: largeSize})
	if !errors.Is(err, segment.ErrChecksum) || !backend.IsTransient(err) {
		t.Fatalf("put with a corrupted part: %v", err)
	}
	t.Logf("corrupted part: %v", err)
	assertNoUploads(t, srv, bucket)
}

func assertNoUploads(t *testing.T, srv *miniotest.Server, bucket string) {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(ctx, &s3api.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range out.Uploads {
		t.Errorf("incomplete upload left behind: %s", aws.ToString(u.Key))
	}
}

// failingReader yields n bytes and then fails.
type failingReader struct {
	r io.Reader
	n int64
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("injected read failure")
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

// pausingReader yields n bytes, then cancels the Put's context, waits for the
// cancellation, and goes on yielding.
type pausingReader struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
	ctx    context.Context
}

func (p *pausingReader) Read(b []byte) (int, error) {
	if p.n <= 0 {
		p.cancel()
		<-p.ctx.Done()
		return p.r.Read(b)
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	n, err := p.r.Read(b)
	p.n -= int64(n)
	return n, err
}

func TestAbortIncompleteUploads(t *testing.T) {
	srv := miniotest.Start(t)
	b := newTestBackend(t, srv, nil)
	bucket := b.cfg.Bucket
	c := srv.Client()

	// A failed Put aborts its own upload.
	data := backendtest.RandomBytes(4, largeSize)
	_, err := b.Put(ctx, 5, &failingReader{r: bytes.NewReader(data), n: largeSize - 100}, backend.PutOptions{Size: largeSize})
	if err == nil || !strings.Contains(err.Error(), "injected read failure") {
		t.Fatalf("put from a failing reader: %v", err)
	}
	assertNoUploads(t, srv, bucket)

	// As does a cancelled one: the source pauses mid-stream until the
	// caller gives up.
	cctx, cancel := context.WithCancel(ctx)
	r := &pausingReader{r: bytes.NewReader(data), n: 10 << 20, cancel: cancel, ctx: cctx}
	if _, err := b.Put(cctx, 5, r, backend.PutOptions{Size: largeSize}); !errors.Is(err, context.Canceled) || backend.IsTransient(err) {
		t.Fatalf("cancelled put: %v, want context.Canceled", err)
	}
	assertNoUploads(t, srv, bucket)

	// What a crash leaves behind: uploads never completed.
	for _, key := range []string{b.key(7), b.key(8), "segments/notes.txt", "elsewhere/segment-0000000000000007.bin"} {
		if _, err := c.CreateMultipartUpload(ctx, &s3api.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String(key)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := b.AbortIncompleteUploads(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("abort uploads older than an hour: %d, %v; want 0", n, err)
	}
	if n, err := b.AbortIncompleteUploads(ctx, time.Now().Add(time.Minute)); err != nil || n != 2 {
		t.Fatalf("abort uploads: %d, %v; want 2", n, err)
	}
	out, err := c.ListMultipartUploads(ctx, &s3api.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, u := range out.Uploads {
		left = append(left, aws.ToString(u.Key))
	}
	slices.Sort(left)
	if fmt.Sprint(left) != "[elsewhere/segment-0000000000000007.bin segments/notes.txt]" {
		t.Fatalf("uploads left: %v", left)
	}
}

func TestReadOnly(t *testing.T) {
	srv := miniotest.Start(t)
	rw := newTestBackend(t, srv, nil)
	if _, err := rw.Put(ctx, 1, strings.NewReader("hello"), backend.PutOptions{Size: 5}); err != nil {
		t.Fatal(err)
	}
	cfg := rw.cfg
	cfg.ReadOnly = true
	ro := mustNew(t, cfg)
	if _, err := ro.Put(ctx, 2, strings.NewReader("x"), backend.PutOptions{Size: 1}); !errors.Is(err, backend.ErrReadOnly) {
		t.Fatalf("read-only put: %v", err)
	}
	if err := ro.Delete(ctx, 1, ""); !errors.Is(err, backend.ErrReadOnly) {
		t.Fatalf("read-only delete: %v", err)
	}
	if _, err := ro.AbortIncompleteUploads(ctx, time.Now()); !errors.Is(err, backend.ErrReadOnly) {
		t.Fatalf("read-only abort: %v", err)
	}
	r, err := ro.Get(ctx, 1, backend.Whole)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != "hello" {
		t.Fatalf("read-only get: %q", got)
	}
}

// TestListLayout checks that only <prefix>segment-<16 lowercase hex>.bin keys
// are listed, in id order, across many small pages.
func TestListLayout(t *testing.T) {
	srv := miniotest.Start(t)
	b := newTestBackend(t, srv, nil)
	b.pageSize = 2
	bucket := b.cfg.Bucket
	ids := []segment.ID{0, 1, 2, 15, 16, 255, 1 << 40, 1<<64 - 1}
	for _, id := range ids {
		if _, err := b.Put(ctx, id, strings.NewReader("x"), backend.PutOptions{Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{
		"segments/segment-0000000000000001.meta.json",
		"segments/segment-00000000000000FF.bin",
		"segments/segment-1.bin",
		"segments/segment-000000000000000g.bin",
		"segments/segment-0000000000000002.bin.tmp",
		"segments/segment-00000000000000003.bin",
		"segments/x/segment-0000000000000003.bin",
		"segment-0000000000000003.bin",
		"other/segment-0000000000000004.bin",
	} {
		if _, err := srv.Client().PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: aws.String(key), Body: strings.NewReader("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	var got []segment.ID
	err := b.List(ctx, func(i segment.Info) error {
		if i.Tier != segment.TierCold || i.Version == "" || i.Size != 1 || i.ModTime.IsZero() {
			return fmt.Errorf("listed %+v", i)
		}
		got = append(got, i.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("listed %v, want %v", got, ids)
	}
}

// TestForeignObjects reads objects another program wrote: no scribefs
// metadata, with or without a store checksum.
func TestForeignObjects(t *testing.T) {
	srv := miniotest.Start(t)
	b := newTestBackend(t, srv, nil)
	bucket := b.cfg.Bucket
	data := []byte("written by a Scribe Ledger node")
	c := srv.Client()
	if _, err := c.PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: aws.String(b.key(1)), Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: aws.String(b.key(2)), Body: bytes.NewReader(data), ChecksumCRC32C: aws.String(crcBase64(segment.CRC32C(data)))}); err != nil {
		t.Fatal(err)
	}
	plain, err := b.Stat(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if plain.ModTime.IsZero() || plain.Size != int64(len(data)) || plain.Version == "" {
		t.Fatalf("stat of a foreign object: %+v", plain)
	}
	if plain.Sums != nil && plain.Sums.Whole != segment.CRC32C(data) {
		t.Fatalf("stat of a foreign object invented sums %v", plain.Sums)
	}
	summed, err := b.Stat(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !summed.Sums.Equal(segment.Sum(data)) {
		t.Fatalf("stat of a foreign object with a CRC32C: sums %v, want %v", summed.Sums, segment.Sum(data))
	}

	// Recorded sums that do not match the bytes: a whole read fails at EOF.
	if _, err := c.PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: aws.String(b.key(3)), Body: bytes.NewReader(data),
		Metadata: map[string]string{metaCRC32C: "00000001"}}); err != nil {
		t.Fatal(err)
	}
	r, err := b.Get(ctx, 3, backend.Whole)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(r)
	r.Close()
	if !errors.Is(err, segment.ErrChecksum) {
		t.Fatalf("whole read of damaged object: %v, want ErrChecksum", err)
	}
}

// TestPoolSize counts the TCP connections a busy backend opens through a
// proxy: never more than PoolSize at once, and reused rather than redialled.
func TestPoolSize(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	seed := mustNew(t, testConfig(srv.Endpoint, bucket))
	if _, err := seed.Put(ctx, 1, strings.NewReader("x"), backend.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	run := func(poolSize int) (total, most int) {
		p := newTCPProxy(t, srv.Addr, 5*time.Millisecond)
		cfg := testConfig("http://"+p.addr(), bucket)
		cfg.PoolSize = poolSize
		b := mustNew(t, cfg)
		var wg sync.WaitGroup
		var failed atomic.Value
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 4; i++ {
					if _, err := b.Stat(ctx, 1); err != nil {
						failed.Store(err)
					}
					r, err := b.Get(ctx, 1, backend.Whole)
					if err != nil {
						failed.Store(err)
						continue
					}
					io.Copy(io.Discard, r)
					r.Close()
				}
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			t.Fatal(err)
		}
		return p.counts()
	}
	total, most := run(3)
	t.Logf("pool 3: %d connections opened, at most %d at once", total, most)
	if most != 3 {
		t.Errorf("pool 3: %d connections at once, want exactly 3", most)
	}
	if total > 3 {
		t.Errorf("pool 3: %d connections opened, want them reused", total)
	}
	total, most = run(12)
	t.Logf("pool 12: %d connections opened, at most %d at once", total, most)
	if most <= 3 {
		t.Errorf("pool 12: only %d connections at once; the load does not exercise the pool", most)
	}
}

// TestIdleTimeout puts a proxy in front of MinIO that stops sending in the
// middle of a body, or before the headers, or sends slowly but steadily.
func TestIdleTimeout(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	direct := mustNew(t, testConfig(srv.Endpoint, bucket))
	data := backendtest.RandomBytes(5, 2<<20)
	if _, err := direct.Put(ctx, 1, bytes.NewReader(data), backend.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	var mode atomic.Value // "stall-body", "stall-head", "trickle"
	const stallAfter = 256 << 10
	proxy := newHTTPProxy(t, srv.Endpoint, nil, func(resp *http.Response) error {
		switch mode.Load() {
		case "stall-body":
			if resp.Request.Method == http.MethodGet {
				resp.Body = &stallingBody{rc: resp.Body, after: stallAfter, ctx: resp.Request.Context()}
			}
		case "stall-head":
			<-resp.Request.Context().Done()
			return resp.Request.Context().Err()
		case "trickle":
			if resp.Request.Method == http.MethodGet {
				resp.Body = &tricklingBody{rc: resp.Body, chunk: 256 << 10, pause: 400 * time.Millisecond}
			}
		}
		return nil
	})
	cfg := testConfig(proxy.URL, bucket)
	cfg.Timeout = time.Second
	b := mustNew(t, cfg)

	t.Run("stalled body", func(t *testing.T) {
		mode.Store("stall-body")
		start := time.Now()
		r, err := b.Get(ctx, 1, backend.Whole)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		took := time.Since(start)
		if !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "idle timeout") {
			t.Fatalf("read of a stalled body: %v after %d bytes, want ErrUnavailable", err, len(got))
		}
		if len(got) != stallAfter || took < time.Second || took > 4*time.Second {
			t.Fatalf("stalled body failed after %d bytes and %v, want %d bytes and about 1s", len(got), took, stallAfter)
		}
		t.Logf("%v after %v", err, took)
	})
	t.Run("stalled headers", func(t *testing.T) {
		mode.Store("stall-head")
		start := time.Now()
		_, err := b.Stat(ctx, 1)
		if took := time.Since(start); !errors.Is(err, backend.ErrUnavailable) || took > 4*time.Second {
			t.Fatalf("stat with stalled headers: %v after %v, want ErrUnavailable after about 1s", err, took)
		}
	})
	t.Run("slow but flowing", func(t *testing.T) {
		mode.Store("trickle")
		start := time.Now()
		r, err := b.Get(ctx, 1, backend.Whole)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		took := time.Since(start)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("slow read: %v, %d bytes", err, len(got))
		}
		if took < 3*time.Second {
			t.Fatalf("slow read took only %v; the proxy did not slow it past the idle timeout", took)
		}
		t.Logf("slow read of %d bytes took %v with a 1s idle timeout", len(got), took)
	})
	mode.Store("")
}

// TestCABundle serves MinIO over TLS with a self-signed certificate: it is
// trusted through AWS_CA_BUNDLE, refused without it, and accepted with
// InsecureSkipVerify.
func TestCABundle(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	u := srv.Endpoint
	tlsProxy := httptest.NewUnstartedServer(newHTTPProxy(t, u, nil, nil).Config.Handler)
	tlsProxy.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	tlsProxy.StartTLS()
	t.Cleanup(tlsProxy.Close)
	pemFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsProxy.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Setenv("AWS_CA_BUNDLE", pemFile)
	b := mustNew(t, testConfig(tlsProxy.URL, bucket))
	if err := b.Health(ctx); err != nil {
		t.Fatalf("TLS with the certificate in AWS_CA_BUNDLE: %v", err)
	}
	if _, err := b.Put(ctx, 1, strings.NewReader("over tls"), backend.PutOptions{Size: 8}); err != nil {
		t.Fatal(err)
	}

	t.Setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
	if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no system CA bundle (make deps installs ca-certificates): %v", err)
		}
		t.Skip("no system CA bundle")
	}
	b = mustNew(t, testConfig(tlsProxy.URL, bucket))
	if err := b.Health(ctx); err == nil {
		t.Fatal("a self-signed certificate was trusted without being in the bundle")
	} else {
		t.Logf("untrusted certificate: %v", err)
	}
	cfg := testConfig(tlsProxy.URL, bucket)
	cfg.InsecureSkipVerify = true
	b = mustNew(t, cfg)
	if err := b.Health(ctx); err != nil {
		t.Fatalf("InsecureSkipVerify: %v", err)
	}
}

// TestStoreCapabilities records what the store under test does with the
// conditional and checksum headers this backend relies on or works around.
func TestStoreCapabilities(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	c := srv.Client()
	data := []byte("probe")
	put, err := c.PutObject(ctx, &s3api.PutObjectInput{Bucket: &bucket, Key: aws.String("k"), Body: bytes.NewReader(data), ChecksumCRC32C: aws.String(crcBase64(segment.CRC32C(data)))})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PutObject returns the CRC32C: %v", aws.ToString(put.ChecksumCRC32C) == crcBase64(segment.CRC32C(data)))
	_, err = c.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &bucket, Key: aws.String("k"), IfMatch: aws.String(`"0123"`)})
	_, herr := c.HeadObject(ctx, &s3api.HeadObjectInput{Bucket: &bucket, Key: aws.String("k")})
	t.Logf("DeleteObject honours If-Match: %v (delete err %v, object still there: %v)", err != nil && herr == nil, err, herr == nil)
}
