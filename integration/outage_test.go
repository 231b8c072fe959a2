package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/internal/faultproxy"
)

// TestOutage30sMixedLoad: MinIO is stopped for 30 s while writers, hot
// readers and a cold reader work through the mount. Hot reads and writes
// never fail; cold reads fail with EIO promptly and work again once MinIO is
// back; a delete made during the outage completes; archival catches up;
// after a remount every acknowledged segment is intact; the mount never
// dies.
func TestOutage30sMixedLoad(t *testing.T) {
	const outage = 30 * time.Second
	e := newEnv(t, "archive_after_secs = 2\ncheck_interval_secs = 1\n")
	cold := map[uint64][]byte{1: backendtest.RandomBytes(1, 2<<20), 2: backendtest.RandomBytes(2, 1<<20), 3: backendtest.RandomBytes(3, 3<<20)}
	for id, d := range cold {
		e.mustColdSegment(id, d)
	}
	m := e.mount()

	var mu sync.Mutex // guards the fields below
	acked := map[uint64]int64{}
	hot := map[uint64]int64{} // written during the outage: stays hot until it ends
	hotReads := 0
	var hotFail, writeFail, coldOK, coldEIO, coldOther int
	var coldWorst time.Duration
	var writeErrs []string
	outageOn := make(chan struct{})
	stop := make(chan struct{})
	var wg sync.WaitGroup

	for w := 0; w < 2; w++ { // writers; their segments are hot, then archived
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			src := filepath.Join(e.dir, fmt.Sprintf("w%d", w))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := uint64(1000 + w*10000 + i)
				seed := int64(id)
				os.WriteFile(src, backendtest.RandomBytes(seed, 64<<10+int(id%5)*100_000), 0o644)
				if out, err := shErr(m.Segs(), fmt.Sprintf("cp %s %d", src, id)); err != nil {
					mu.Lock()
					writeFail++
					writeErrs = append(writeErrs, out)
					mu.Unlock()
				} else {
					mu.Lock()
					acked[id] = seed
					select {
					case <-outageOn:
						hot[id] = seed
					default:
					}
					mu.Unlock()
				}
				time.Sleep(100 * time.Millisecond)
			}
		}(w)
	}
	wg.Add(1)
	go func() { // hot reader: re-reads what writers acknowledged during the outage
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			var id uint64
			var seed int64
			for id, seed = range hot {
				break
			}
			mu.Unlock()
			if id != 0 {
				got, err := os.ReadFile(m.path(id))
				if err != nil || !bytes.Equal(got, backendtest.RandomBytes(seed, 64<<10+int(id%5)*100_000)) {
					mu.Lock()
					hotFail++
					mu.Unlock()
				}
				mu.Lock()
				hotReads++
				mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	<-time.After(3 * time.Second)
	minio.Stop()
	restarted := false
	defer func() {
		if !restarted {
			minio.Restart()
		}
	}()
	if resp, err := http.Get(minio.Endpoint + "/minio/health/live"); err == nil {
		resp.Body.Close()
		t.Fatal("MinIO still answers after Stop: a stray server holds its port")
	}
	close(outageOn)
	outageStart := time.Now()
	// cold reads during the outage: segment 1 and 3, never read before, so
	// not cached
	for time.Since(outageStart) < outage-8*time.Second {
		for _, id := range []uint64{1, 3} {
			start := time.Now()
			out, err := shErr(m.Segs(), fmt.Sprintf("cat %d > /dev/null", id))
			took := time.Since(start)
			switch {
			case err == nil:
				coldOK++
			case strings.Contains(out, "Input/output error"):
				coldEIO++
			default:
				coldOther++
				t.Errorf("cold read during outage: %v %q", err, out)
			}
			coldWorst = max(coldWorst, took)
		}
		time.Sleep(time.Second)
	}
	// a delete of a cold segment during the outage
	sh(t, m.Segs(), "rm 2")
	if out := sh(t, m.Segs(), "ls"); strings.Contains("\n"+out, "\n2\n") {
		t.Fatalf("deleted segment listed during the outage")
	}
	time.Sleep(time.Until(outageStart.Add(outage)))
	if err := minio.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	back := time.Now()
	var coldBack time.Duration
	for {
		if out, err := shErr(m.Segs(), "cmp 1 "+e.srcPath(1)); err == nil {
			coldBack = time.Since(back)
			break
		} else if time.Since(back) > 30*time.Second {
			t.Fatalf("cold read still failing 30s after MinIO returned: %s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	m.alive(t)

	mu.Lock()
	defer mu.Unlock()
	if hotReads == 0 || len(hot) == 0 {
		t.Fatalf("no hot reads (%d) or no writes (%d) during the outage", hotReads, len(hot))
	}
	if hotFail != 0 || writeFail != 0 {
		t.Fatalf("during the outage: %d hot reads and %d writes failed: %v", hotFail, writeFail, writeErrs)
	}
	if coldEIO == 0 || coldOK != 0 {
		t.Fatalf("cold reads during the outage: %d EIO, %d succeeded (want all EIO)", coldEIO, coldOK)
	}
	if coldWorst > 3*5*time.Second+5*time.Second {
		t.Fatalf("a cold read took %v to fail", coldWorst)
	}
	// archival completes and the delete reaches S3
	deadline := time.Now().Add(60 * time.Second)
	for {
		pending := 0
		for id := range acked {
			if !e.objectExists(id) {
				pending++
			}
		}
		if pending == 0 && !e.objectExists(2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60s after the outage: %d of %d written segments not archived; object 2 exists=%v", pending, len(acked), e.objectExists(2))
		}
		time.Sleep(500 * time.Millisecond)
	}
	m.unmount()
	m2 := e.mount()
	for id, seed := range acked {
		got, err := os.ReadFile(m2.path(id))
		if err != nil || !bytes.Equal(got, backendtest.RandomBytes(seed, 64<<10+int(id%5)*100_000)) {
			t.Fatalf("segment %d acknowledged during the outage: %v", id, err)
		}
	}
	for _, id := range []uint64{1, 3} {
		sh(t, m2.Segs(), fmt.Sprintf("cmp %d %s", id, e.srcPath(id)))
	}
	if _, err := os.Stat(m2.path(2)); !os.IsNotExist(err) {
		t.Fatalf("segment deleted during the outage is back: %v", err)
	}
	t.Logf("MEASURED 30s outage: %d segments written and acknowledged (%d during the outage, 0 write failures), %d hot reads 0 failures, cold reads %d EIO / 0 OK, slowest EIO %v, cold reads back %v after restart, all %d archived and re-read after remount, delete done",
		len(acked), len(hot), hotReads, coldEIO, coldWorst.Round(time.Millisecond), coldBack.Round(time.Millisecond), len(acked))
}

func (e *env) srcPath(id uint64) string {
	return filepath.Join(e.dir, "src"+strconv.FormatUint(id, 10))
}

func (e *env) incompleteUploads() int {
	e.t.Helper()
	out, err := e.s3().ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(e.bucket)})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(out.Uploads)
}

// TestOutageKillDuringArchive: the mount is killed with SIGKILL while large
// segments are being uploaded (multipart, slowed by the proxy). After a
// remount every segment reads back intact, every object in the bucket is
// complete, and the orphaned multipart uploads are aborted.
func TestOutageKillDuringArchive(t *testing.T) {
	e, p := newProxyEnv(t, 5, "")
	cfg, _ := os.ReadFile(e.cfgPath)
	e.writeConfig(strings.Replace(string(cfg), "archive_after_secs = 86400\ncheck_interval_secs = 3600", "archive_after_secs = 1\ncheck_interval_secs = 1", 1))
	sizes := map[uint64]int{1: 40 << 20, 2: 33<<20 + 5, 3: 24 << 20, 4: 3 << 20}
	for id, n := range sizes {
		mustWriteFile(t, e.srcPath(id), backendtest.RandomBytes(int64(id), n))
		e.mustRun(nil, "put", strconv.FormatUint(id, 10), e.srcPath(id))
	}
	// parts crawl: each part upload waits 3 s before reaching MinIO
	p.Set(faultproxy.Fault{Kind: faultproxy.Latency, Method: "PUT", Query: "uploadId", Delay: 3 * time.Second})
	m := e.mount()
	deadline := time.Now().Add(30 * time.Second)
	for p.Count("PUT", "uploadId") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no multipart upload started: %v", p.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	m.kill()
	orphans := e.incompleteUploads()
	p.Clear()
	m2 := e.mount()
	for id := range sizes {
		sh(t, m2.Segs(), fmt.Sprintf("cmp %d %s", id, e.srcPath(id)))
	}
	// every object present is whole
	for id, n := range sizes {
		head, err := e.s3().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(objectKey(id))})
		if err == nil && aws.ToInt64(head.ContentLength) != int64(n) {
			t.Fatalf("object %d has %d bytes, want %d", id, aws.ToInt64(head.ContentLength), n)
		}
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		all := true
		for id := range sizes {
			all = all && e.objectExists(id)
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("archival did not complete within 60s of the remount")
		}
		time.Sleep(500 * time.Millisecond)
	}
	for id, n := range sizes {
		got, err := e.objectBytes(id)
		if err != nil || !bytes.Equal(got, backendtest.RandomBytes(int64(id), n)) {
			t.Fatalf("object %d after archival completed: %d bytes, %v", id, len(got), err)
		}
	}
	// orphans of the killed mount are gone (the remount aborts uploads
	// initiated before it started; uploads of the new mount have finished)
	deadline = time.Now().Add(20 * time.Second)
	left := e.incompleteUploads()
	for left > 0 && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		left = e.incompleteUploads()
	}
	if left != 0 {
		t.Fatalf("%d incomplete multipart uploads left after the remount (%d right after the kill)", left, orphans)
	}
	m2.alive(t)
	t.Logf("MEASURED kill -9 during archival: %d incomplete multipart uploads right after the kill, 0 after remount; %d segments (%d MiB) byte-identical through the mount and in S3",
		orphans, len(sizes), (40 + 33 + 24 + 3))
}

// TestOutageKillDuringDelete: the mount is killed while deletes of cold
// segments are in flight (slowed by the proxy). After a remount each
// segment is either gone everywhere or whole, deletes that returned are
// never undone, and the listing agrees with the bucket.
func TestOutageKillDuringDelete(t *testing.T) {
	e, p := newProxyEnv(t, 5, "")
	const n = 12
	for id := uint64(1); id <= n; id++ {
		e.mustColdSegment(id, backendtest.RandomBytes(int64(id), 300_000+int(id)))
	}
	m := e.mount()
	p.Set(faultproxy.Fault{Kind: faultproxy.Latency, Method: "DELETE", Delay: 1500 * time.Millisecond})
	var mu sync.Mutex
	done := map[uint64]bool{}
	var wg sync.WaitGroup
	for id := uint64(1); id <= n; id++ {
		wg.Add(1)
		go func(id uint64) {
			defer wg.Done()
			if _, err := shErr(m.Segs(), fmt.Sprintf("rm %d", id)); err == nil {
				mu.Lock()
				done[id] = true
				mu.Unlock()
			}
		}(id)
		time.Sleep(300 * time.Millisecond)
	}
	m.kill()
	wg.Wait()
	p.Clear()
	m2 := e.mount()
	time.Sleep(3 * time.Second) // a refresh (refresh_secs = 2) reconciles with the bucket
	gone, whole := 0, 0
	for id := uint64(1); id <= n; id++ {
		got, err := os.ReadFile(m2.path(id))
		switch {
		case os.IsNotExist(err):
			gone++
			if e.objectExists(id) {
				t.Fatalf("segment %d: not listed but its object is still in the bucket", id)
			}
		case err != nil:
			t.Fatalf("segment %d after the crash: %v", id, err)
		default:
			if done[id] {
				t.Fatalf("segment %d: rm returned success before the kill, and it is back", id)
			}
			if !bytes.Equal(got, backendtest.RandomBytes(int64(id), 300_000+int(id))) {
				t.Fatalf("segment %d: %d bytes, not the whole segment", id, len(got))
			}
			whole++
		}
	}
	m2.alive(t)
	t.Logf("MEASURED kill -9 during %d deletes: %d rm acknowledged before the kill, after remount %d gone (objects gone too), %d whole, 0 partial or resurrected", n, len(done), gone, whole)
}
