package tier_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/backend/retry"
	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

// Adversarial review of the fence (tier/store.go coldCtx, coldGate):
// nothing that changes the bucket may go out once the store is fenced.

var rctx = context.Background()

// reqLog is a reverse proxy to MinIO that numbers the requests it sees and
// lets a test act on a request before it is forwarded (onRequest) and on
// a response before the client gets it (onResponse).
type reqLog struct {
	*httptest.Server
	mu         sync.Mutex
	seen       []string // "METHOD path?query"
	onRequest  func(r *http.Request, seq int)
	onResponse func(r *http.Response)
}

func newReqLog(t *testing.T, target string) *reqLog {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &reqLog{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
			p.mu.Lock()
			p.seen = append(p.seen, pr.In.Method+" "+pr.In.URL.Path+"?"+pr.In.URL.RawQuery)
			seq := len(p.seen) - 1
			hook := p.onRequest
			p.mu.Unlock()
			if hook != nil {
				hook(pr.In, seq)
			}
		},
		ModifyResponse: func(r *http.Response) error {
			p.mu.Lock()
			hook := p.onResponse
			p.mu.Unlock()
			if hook != nil {
				hook(r)
			}
			return nil
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.Server = httptest.NewServer(rp)
	t.Cleanup(p.Close)
	return p
}

func (p *reqLog) since(seq int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq < 0 || seq >= len(p.seen) {
		return nil
	}
	return append([]string(nil), p.seen[seq:]...)
}

func (p *reqLog) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.seen)
}

// writes keeps the requests that change the bucket, except the abort of a
// multipart upload (DELETE ?uploadId=), which only discards our own parts.
func writes(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		m, rest, _ := strings.Cut(r, " ")
		switch {
		case m == http.MethodGet || m == http.MethodHead:
		case m == http.MethodDelete && strings.Contains(rest, "uploadId="):
		default:
			out = append(out, r)
		}
	}
	return out
}

// fenceStack is a store over a bbolt hot tier and MinIO (through p), with
// the retry wrapper a mount puts in between.
func fenceStack(t *testing.T, p *reqLog, srv *miniotest.Server, bucket string) (*tier.Store, *s3.Backend) {
	return fenceStackCfg(t, p, srv, bucket, tier.Config{})
}

func fenceStackCfg(t *testing.T, p *reqLog, srv *miniotest.Server, bucket string, cfg tier.Config) (*tier.Store, *s3.Backend) {
	t.Helper()
	raw, err := s3.New(rctx, s3.Config{
		Bucket: bucket, Region: miniotest.Region, Endpoint: p.URL,
		AccessKeyID: miniotest.AccessKey, SecretAccessKey: miniotest.SecretKey, PathStyle: true,
		PartSize: 5 << 20, Concurrency: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	cold := retry.New(raw, retry.Policy{MaxRetries: 3, BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond})
	hot, err := local.Open(filepath.Join(t.TempDir(), "hot.db"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hot.Close() })
	s, err := tier.New(hot, hot.Index(), cold, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, raw
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// TestReviewFenceMidMultipartSendsNothingAfter: the store is fenced (the
// lease keeper's deadline, or a take-over) while the first part of a
// multipart archive is on its way. No later part, no companion, no
// complete may go out after the fence; the archive fails with the fence's
// cause, the segment stays hot, and no object appears in the bucket.
func TestReviewFenceMidMultipartSendsNothingAfter(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	p := newReqLog(t, srv.Endpoint)
	s, _ := fenceStack(t, p, srv, bucket)
	const id = segment.ID(7)
	data := randomBytes(22<<20, 1) // 5 parts of 5 MiB
	if _, err := s.Put(rctx, id, bytes.NewReader(data), int64(len(data)), time.Now()); err != nil {
		t.Fatal(err)
	}
	fencedAt := -1
	var once sync.Once
	p.onRequest = func(r *http.Request, seq int) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.RawQuery, "partNumber=1") {
			once.Do(func() {
				fencedAt = seq + 1 // part 1 itself was sent before the fence
				s.Fence(errors.New("review: writer lease about to expire"))
			})
		}
	}
	err := s.Archive(rctx, id)
	if fencedAt < 0 {
		t.Fatalf("no multipart upload seen (archive: %v)", err)
	}
	after := p.since(fencedAt)
	t.Logf("archive: %v", err)
	t.Logf("requests after the fence: %q", after)
	if w := writes(after); len(w) > 0 {
		t.Errorf("requests changing the bucket sent after the fence: %q", w)
	}
	if !errors.Is(err, backend.ErrReadOnly) {
		t.Errorf("archive cut by the fence: %v, want the fence's cause (ErrReadOnly)", err)
	}
	if info, err := s.Stat(rctx, id); err != nil || info.Tier != segment.TierHot {
		t.Errorf("after a fenced archive: stat %+v, %v; want the segment hot", info, err)
	}
	c := srv.Client()
	if _, err := c.HeadObject(rctx, &s3api.HeadObjectInput{Bucket: &bucket, Key: strPtr("segments/segment-" + id.Hex() + ".bin")}); err == nil {
		t.Error("the segment's object is in the bucket after a fenced archive")
	}
	ups, err := c.ListMultipartUploads(rctx, &s3api.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 {
		t.Errorf("%d incomplete uploads left after a fenced archive", len(ups.Uploads))
	}
}

// TestReviewFenceDuringTransitMismatchSendsNoDelete: the store is fenced
// while the reply to a single-part archive PUT (stored by MinIO, its reply
// reporting another CRC32C than the one sent: damage in transit) is on its
// way. Had the reply reached the backend, it would remove the object it
// believes damaged (discard, with a context that ignores the caller's
// cancellation) and the retry wrapper would put it again. The fence must
// cancel the request in flight so that neither goes out: a DELETE sent
// after the fence may land after the lease passed to another host (MinIO
// ignores If-Match on DELETE).
func TestReviewFenceDuringTransitMismatchSendsNoDelete(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	p := newReqLog(t, srv.Endpoint)
	s, _ := fenceStack(t, p, srv, bucket)
	const id = segment.ID(9)
	data := randomBytes(1<<20, 2)
	if _, err := s.Put(rctx, id, bytes.NewReader(data), int64(len(data)), time.Now()); err != nil {
		t.Fatal(err)
	}
	fencedAt := -1
	var once sync.Once
	var cancelled atomic.Bool
	hookDone := make(chan struct{})
	p.onResponse = func(r *http.Response) {
		req := r.Request
		if req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, ".bin") && r.StatusCode == http.StatusOK {
			once.Do(func() {
				fencedAt = p.count()
				s.Fence(errors.New("review: writer lease lost"))
				r.Header.Set("X-Amz-Checksum-Crc32c", "AAAAAA==")
				// The fence must cancel the PUT in flight: wait (bounded)
				// until the client gives up on it, so that what follows
				// does not depend on which of the two wins a race.
				select {
				case <-req.Context().Done():
					cancelled.Store(true)
				case <-time.After(5 * time.Second):
				}
				close(hookDone)
			})
		}
	}
	err := s.Archive(rctx, id)
	if fencedAt < 0 {
		t.Fatalf("no segment PUT seen (archive: %v)", err)
	}
	after := p.since(fencedAt)
	t.Logf("archive: %v", err)
	t.Logf("requests after the fence: %q", after)
	if w := writes(after); len(w) > 0 {
		t.Errorf("requests changing the bucket sent after the fence: %q", w)
	}
	if err == nil {
		t.Error("archive succeeded although the store was fenced and the reply reported damage")
	}
	<-hookDone
	if !cancelled.Load() {
		t.Error("the fence did not cancel the PUT whose reply was on its way (waited 5s)")
	}
}

func strPtr(s string) *string { return &s }

// TestReviewAnyVersionTombstoneAfterHandover documents tier/doc.go's one
// limit, with S3 up throughout: host A's archive of segment 5 is in flight
// when the segment is removed (rm does not wait: a tombstone of any
// version) and the fence cuts the upload's PUT before its reply (the lease
// about to expire), so whether the object landed is unknown and the
// tombstone stays "any". Host B takes the lease and writes segment 5; the
// lease comes back to A, whose replay deletes B's object. When the PUT was
// answered before the fence, the tombstone names A's version and B's
// object survives (TestAnyVersionTombstoneNamedWhenFencedAfterUpload).
func TestReviewAnyVersionTombstoneAfterHandover(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	pa, pb := newReqLog(t, srv.Endpoint), newReqLog(t, srv.Endpoint)
	a, _ := fenceStack(t, pa, srv, bucket)
	b, _ := fenceStack(t, pb, srv, bucket)
	const id = segment.ID(5)
	if _, err := a.Put(rctx, id, bytes.NewReader(randomBytes(1<<20, 3)), 1<<20, time.Now()); err != nil {
		t.Fatal(err)
	}
	var rmErr error
	var once sync.Once
	pa.onRequest = func(r *http.Request, _ int) {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, ".bin") {
			once.Do(func() {
				rmErr = a.Delete(rctx, id) // the archive holds the segment's lock
				a.Fence(errors.New("review: writer lease about to expire"))
			})
		}
	}
	archErr := a.Archive(rctx, id)
	t.Logf("A: rm during the upload: %v; archive: %v", rmErr, archErr)
	if rmErr != nil {
		t.Fatalf("rm during the upload: %v", rmErr)
	}
	// The lease goes to B, which writes segment 5.
	bData := randomBytes(1<<20, 4)
	if _, err := b.Put(rctx, id, bytes.NewReader(bData), int64(len(bData)), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.Archive(rctx, id); err != nil {
		t.Fatal(err)
	}
	b.Fence(errors.New("review: B unmounted"))
	// The lease comes back to A.
	a.Unfence()
	n, err := a.ReplayTombstones(rctx)
	t.Logf("A: replayed %d tombstones: %v", n, err)
	c := srv.Client()
	// The documented limit: the cut upload left an any-version
	// tombstone, and its replay deleted B's object.
	if n != 1 || err != nil {
		t.Fatalf("replay: %d, %v; want A's any-version tombstone carried out", n, err)
	}
	if _, err := c.HeadObject(rctx, &s3api.HeadObjectInput{Bucket: &bucket, Key: strPtr("segments/segment-" + id.Hex() + ".bin")}); !isNotFound(err) {
		t.Fatalf("B's segment %d after A's replay of an any-version tombstone: %v; tier/doc.go says it is deleted (update the doc if this limit was lifted)", id, err)
	}
}

func isNotFound(err error) bool {
	var nf *s3types.NotFound
	return errors.As(err, &nf)
}

// TestReviewWriteThroughFencedKeepsHotCopy: with write-through, a Put whose
// upload the fence cuts mid-way (its PUT on its way)
// reports ErrNotWrittenThrough, keeps the new version readable in the hot
// tier, sends nothing more that changes the bucket, and the version is
// archived once the store may write again.
func TestReviewWriteThroughFencedKeepsHotCopy(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	p := newReqLog(t, srv.Endpoint)
	s, _ := fenceStackCfg(t, p, srv, bucket, tier.Config{WriteThrough: true})
	const id = segment.ID(11)
	data := randomBytes(12<<20, 5)
	fencedAt := -1
	var once sync.Once
	p.onRequest = func(r *http.Request, seq int) {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, ".bin") {
			once.Do(func() {
				fencedAt = seq + 1
				s.Fence(errors.New("review: writer lease about to expire"))
			})
		}
	}
	_, err := s.Put(rctx, id, bytes.NewReader(data), int64(len(data)), time.Now())
	t.Logf("write-through put, fenced mid-upload: %v; fenced at request %d; requests: %q", err, fencedAt, p.since(0))
	if !errors.Is(err, tier.ErrNotWrittenThrough) {
		t.Fatalf("put: %v, want ErrNotWrittenThrough", err)
	}
	if w := writes(p.since(fencedAt)); len(w) > 0 {
		t.Errorf("requests changing the bucket after the fence: %q", w)
	}
	r, err := s.Open(rctx, id)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	n, err := r.ReadAt(got, 0)
	r.Close()
	if n != len(data) || !bytes.Equal(got, data) {
		t.Fatalf("hot copy after a fenced write-through: read %d bytes (%v), equal %v", n, err, bytes.Equal(got[:n], data[:n]))
	}
	if r.Info().Tier != segment.TierHot {
		t.Errorf("tier %v, want hot", r.Info().Tier)
	}
	s.Unfence()
	if err := s.Archive(rctx, id); err != nil {
		t.Fatalf("archive once unfenced: %v", err)
	}
	if info, err := s.Stat(rctx, id); err != nil || info.Tier != segment.TierCold {
		t.Fatalf("after archive: %+v, %v", info, err)
	}
}

// TestReviewDeadlinePassedWithoutFence: the keeper allowed cold changes
// until a deadline and then never called Fence (it hung, or its goroutine
// was starved). Once the store's clock passes the deadline, an archive is
// refused before anything is sent, and a delete of a cold segment sends
// no DELETE.
func TestReviewDeadlinePassedWithoutFence(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	p := newReqLog(t, srv.Endpoint)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s, _ := fenceStackCfg(t, p, srv, bucket, tier.Config{Now: clock})
	data := randomBytes(1<<20, 6)
	for _, id := range []segment.ID{1, 2} {
		if _, err := s.Put(rctx, id, bytes.NewReader(data), int64(len(data)), clock()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Archive(rctx, 1); err != nil {
		t.Fatal(err)
	}
	s.AllowColdUntil(clock().Add(time.Minute))
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	before := p.count()
	archErr := s.Archive(rctx, 2)
	delErr := s.Delete(rctx, 1)
	after := p.since(before)
	t.Logf("past the deadline: archive: %v; delete: %v; requests: %q", archErr, delErr, after)
	if !errors.Is(archErr, backend.ErrReadOnly) {
		t.Errorf("archive past the deadline: %v, want refused", archErr)
	}
	if w := writes(after); len(w) > 0 {
		t.Errorf("requests changing the bucket past the deadline: %q", w)
	}
	if info, err := s.Stat(rctx, 2); err != nil || info.Tier != segment.TierHot {
		t.Errorf("segment 2 after a refused archive: %+v, %v", info, err)
	}
}

// TestAnyVersionTombstoneNamedWhenFencedAfterUpload: as
// TestReviewAnyVersionTombstoneAfterHandover, but the fence comes after
// A's upload was answered (the lease about to expire before the commit):
// A knows the version it uploaded, so its tombstone names that version,
// not any, and the replay after the lease went to B and back leaves B's
// object alone while A's own upload is gone.
func TestAnyVersionTombstoneNamedWhenFencedAfterUpload(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	pa, pb := newReqLog(t, srv.Endpoint), newReqLog(t, srv.Endpoint)
	// A's clock: its lease's deadline passes while the upload's reply is
	// on its way, so the upload ends but its commit is refused.
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	a, _ := fenceStackCfg(t, pa, srv, bucket, tier.Config{Now: now})
	b, _ := fenceStack(t, pb, srv, bucket)
	a.AllowColdUntil(now().Add(time.Hour))
	const id = segment.ID(5)
	if _, err := a.Put(rctx, id, bytes.NewReader(randomBytes(1<<20, 3)), 1<<20, time.Now()); err != nil {
		t.Fatal(err)
	}
	var rmErr error
	var once sync.Once
	pa.onResponse = func(r *http.Response) {
		if r.Request.Method == http.MethodPut && strings.HasSuffix(r.Request.URL.Path, ".bin") && r.StatusCode == http.StatusOK {
			once.Do(func() {
				rmErr = a.Delete(rctx, id) // the archive holds the segment's lock
				skew.Store(int64(2 * time.Hour))
			})
		}
	}
	archErr := a.Archive(rctx, id)
	t.Logf("A: rm after the upload landed: %v; archive: %v", rmErr, archErr)
	if rmErr != nil || archErr == nil {
		t.Fatalf("rm: %v; archive: %v (want fenced)", rmErr, archErr)
	}
	bData := randomBytes(1<<20, 4)
	if _, err := b.Put(rctx, id, bytes.NewReader(bData), int64(len(bData)), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.Archive(rctx, id); err != nil {
		t.Fatal(err)
	}
	b.Fence(errors.New("B unmounted"))
	a.Unfence()
	n, err := a.ReplayTombstones(rctx)
	t.Logf("A: replayed %d tombstones: %v", n, err)
	if err != nil || n != 1 {
		t.Fatalf("replay: %d, %v; want A's one tombstone done", n, err)
	}
	c := srv.Client()
	if _, err := c.HeadObject(rctx, &s3api.HeadObjectInput{Bucket: &bucket, Key: strPtr("segments/segment-" + id.Hex() + ".bin")}); err != nil {
		t.Fatalf("B's segment %d, written after A's rm, was deleted by A's replay: %v", id, err)
	}
	bi, _, err := b.IndexEntry(id)
	if err != nil {
		t.Fatal(err)
	}
	if ci, err := b.ColdStat(rctx, id); err != nil || ci.Version != bi.Version {
		t.Fatalf("the bucket's segment %d after A's replay: %+v, %v; want B's version %s", id, ci, err, bi.Version)
	}
}
