// Command bench is scribefs's benchmark harness (`make bench`). In one run,
// against one MinIO it starts itself, it measures the baselines (raw S3
// GET/PUT with the AWS SDK, a page-cached local cat, a local cp + sync) and
// scribefs through real mounts, then the same reads through s3fs and rclone
// mount, and prints a table of times and ratios. Ratios compare figures from
// the same run, since these machines are noisy; nothing here asserts a time.
//
// QUICK=1 scales every size down so CI can check the harness still works.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/internal/miniotest"
)

var onlySteps string

type sizes struct {
	big        int64 // steps 2, 3, 6
	smallCount int   // step 4
	smallSize  int64
	lsCount    int   // step 5
	archive    int64 // step 7, in 64 MiB segments
	fioSize    int64 // step 8
	fioSecs    int
}

var full = sizes{big: 1 << 30, smallCount: 1000, smallSize: 64 << 10, lsCount: 100_000, archive: 1 << 30, fioSize: 5 << 30, fioSecs: 20}
var quick = sizes{big: 64 << 20, smallCount: 100, smallSize: 64 << 10, lsCount: 2000, archive: 128 << 20, fioSize: 128 << 20, fioSecs: 3}

// h is the harness state shared by the steps.
type h struct {
	sz       sizes
	work     string
	bin      string
	minio    *miniotest.Server
	proxy    *countingProxy
	client   *s3api.Client
	bucket   string
	results  []result
	peakRSS  atomic.Int64
	peers    bool
	failures []string
}

type result struct {
	step, what string
	seconds    float64
	bytes      int64 // for throughput; 0 when not meaningful
	ops        float64
	note       string
}

func main() {
	out := flag.String("out", "", "write BENCHMARKS.md-style results (table and chart) to this file")
	svg := flag.String("svg", "", "write the chart to this SVG file")
	peers := flag.Bool("peers", true, "also measure s3fs and rclone mount")
	only := flag.String("only", "", "run only the steps whose names contain this (for profiling one step)")
	flag.Parse()
	sz := full
	if os.Getenv("QUICK") != "" {
		sz = quick
	}
	onlySteps = *only
	if err := run(sz, *out, *svg, *peers); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(sz sizes, out, svg string, peers bool) error {
	work, err := os.MkdirTemp("", "scribefs-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	hh := &h{sz: sz, work: work, peers: peers}
	hh.bin = os.Getenv("SCRIBEFS_BIN")
	if hh.bin == "" {
		hh.bin = filepath.Join(work, "scribefs")
		if b, err := exec.Command("go", "build", "-o", hh.bin, "./cmd/scribefs").CombinedOutput(); err != nil {
			return fmt.Errorf("build: %v: %s", err, b)
		}
	}
	srv, stop, err := miniotest.StartMain()
	if err != nil {
		return err
	}
	if srv == nil {
		return fmt.Errorf("MinIO not installed: run `make minio`")
	}
	defer stop()
	hh.minio = srv
	hh.proxy = newCountingProxy(srv.Endpoint)
	defer hh.proxy.Close()
	hh.client = srv.Client()
	hh.bucket = "bench"
	if _, err := hh.client.CreateBucket(context.Background(), &s3api.CreateBucketInput{Bucket: aws.String(hh.bucket)}); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: sizes %+v, work dir %s\n", sz, work)
	steps := []struct {
		name string
		fn   func() error
	}{
		{"baselines", hh.baselines},
		{"cold and warm read", hh.coldWarm},
		{"small cold reads", hh.smallReads},
		{"ls -l", hh.listing},
		{"write", hh.write},
		{"archival", hh.archival},
		{"fio random reads", hh.fio},
	}
	for _, s := range steps {
		if onlySteps != "" && !strings.Contains(s.name, onlySteps) && s.name != "baselines" {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s\n", s.name)
		if err := s.fn(); err != nil {
			hh.failures = append(hh.failures, fmt.Sprintf("%s: %v", s.name, err))
			fmt.Fprintf(os.Stderr, "bench: %s failed: %v\n", s.name, err)
		}
	}
	if peers {
		fmt.Fprintf(os.Stderr, "bench: peers\n")
		if err := hh.peersRun(); err != nil {
			hh.failures = append(hh.failures, "peers: "+err.Error())
			fmt.Fprintf(os.Stderr, "bench: peers failed: %v\n", err)
		}
	}
	table := hh.table()
	fmt.Print(table)
	if out != "" {
		if err := hh.writeReport(out, table, svg); err != nil {
			return err
		}
	}
	if svg != "" {
		if err := os.WriteFile(svg, []byte(hh.chart()), 0o644); err != nil {
			return err
		}
	}
	if len(hh.failures) > 0 {
		return fmt.Errorf("%d steps failed: %s", len(hh.failures), strings.Join(hh.failures, "; "))
	}
	return nil
}

func (hh *h) add(r result) {
	hh.results = append(hh.results, r)
	fmt.Fprintf(os.Stderr, "bench:   %-44s %9.3fs %s\n", r.step+" "+r.what, r.seconds, rate(r))
}

func (hh *h) get(step, what string) (result, bool) {
	for _, r := range hh.results {
		if r.step == step && r.what == what {
			return r, true
		}
	}
	return result{}, false
}

func rate(r result) string {
	switch {
	case r.bytes > 0:
		return fmt.Sprintf("%.0f MB/s", float64(r.bytes)/r.seconds/1e6)
	case r.ops > 0:
		return fmt.Sprintf("%.0f ops/s", r.ops/r.seconds)
	}
	return ""
}

func timeIt(fn func() error) (float64, error) {
	start := time.Now()
	err := fn()
	return time.Since(start).Seconds(), err
}

// bestOf runs fn n times and returns the shortest time.
func bestOf(n int, fn func() error) (float64, error) {
	best := 0.0
	for i := 0; i < n; i++ {
		secs, err := timeIt(fn)
		if err != nil {
			return 0, err
		}
		if i == 0 || secs < best {
			best = secs
		}
	}
	return best, nil
}

func shell(dir, script string) error {
	cmd := exec.Command("bash", "-c", "set -euo pipefail; "+script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", script, err, lastLines(string(out), 5))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// settle writes out what earlier steps left dirty, so that a timed write
// step (local or through the mount) does not pay for another's data: an
// fsync on ext4 commits the journal, which waits for every file's ordered
// data.
func settle() { syscall.Sync() }

func dropCaches() { os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200) }

// countingProxy sits between scribefs and MinIO and counts requests, so a
// step can show how many S3 requests it made.
type countingProxy struct {
	*httptest.Server
	n atomic.Int64
}

func newCountingProxy(target string) *countingProxy {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	p := &countingProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.n.Add(1)
		rp.ServeHTTP(w, r)
	}))
	return p
}

// putRaw uploads an object with the SDK (multipart, parallel, for large
// bodies), as a baseline and to lay out test data.
func (hh *h) putRaw(key string, size int64, seed byte) error {
	ctx := context.Background()
	if size <= 64<<20 {
		_, err := hh.client.PutObject(ctx, &s3api.PutObjectInput{Bucket: &hh.bucket, Key: aws.String(key), Body: bytes.NewReader(pattern(size, seed))})
		return err
	}
	return multipartPut(ctx, hh.client, hh.bucket, key, size, seed, 16<<20, 8)
}

// pattern is cheap deterministic data that does not compress to nothing.
func pattern(n int64, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

var patternCache sync.Map

func patternBlock(seed byte) []byte {
	if v, ok := patternCache.Load(seed); ok {
		return v.([]byte)
	}
	b := pattern(16<<20, seed)
	patternCache.Store(seed, b)
	return b
}

// patternReader yields size bytes repeating a 16 MiB pattern block.
type patternReader struct {
	block []byte
	off   int64
	size  int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.size {
		return 0, io.EOF
	}
	n := copy(b, p.block[p.off%int64(len(p.block)):])
	if rest := p.size - p.off; int64(n) > rest {
		n = int(rest)
	}
	p.off += int64(n)
	return n, nil
}

func writeLocal(path string, size int64, seed byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, &patternReader{block: patternBlock(seed), size: size}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
