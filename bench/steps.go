package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/scribefs/scribefs/internal/miniotest"
)

const (
	bigID     = 1
	smallBase = 100_000
	lsBase    = 1_000_000
	fioID     = 3
	writeID   = 4
)

func key(id uint64) string { return fmt.Sprintf("segments/segment-%016x.bin", id) }

// config writes a scribefs config with its own hot tier. It talks to MinIO
// directly, as the raw baselines do, except for the listing step, which goes
// through the counting proxy (name "ls").
func (hh *h) config(name, tiering string) (cfgPath, hotPath string) {
	return hh.configWith(name, tiering, "")
}

// configWith is config with more [cache] settings.
func (hh *h) configWith(name, tiering, cacheExtra string) (cfgPath, hotPath string) {
	endpoint := hh.minio.Endpoint
	if name == "ls" {
		endpoint = hh.proxy.URL
	}
	dir := filepath.Join(hh.work, name)
	os.MkdirAll(dir, 0o755)
	hotPath = filepath.Join(dir, "hot.db")
	cfgPath = filepath.Join(dir, "config.toml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`[storage.hot]
path = %q
[storage.s3]
bucket = %q
region = %q
endpoint = %q
access_key_id = %q
secret_access_key = %q
path_style = true
pool_size = 16
refresh_secs = 3600
[cache]
max_bytes = "256MiB"
%s
[tiering]
%s
`, hotPath, hh.bucket, miniotest.Region, endpoint, miniotest.AccessKey, miniotest.SecretKey, cacheExtra, tiering)), 0o600)
	return cfgPath, hotPath
}

type mounted struct {
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	stop chan struct{}
	once sync.Once
}

// mount starts `scribefs mount` and samples its anonymous memory until it
// stops.
func (hh *h) mount(cfgPath string, args ...string) (*mounted, error) {
	dir, _ := os.MkdirTemp(hh.work, "mnt")
	full := append([]string{"--config", cfgPath, "--log-level", "warn", "mount"}, args...)
	cmd := exec.Command(hh.bin, append(full, dir)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &mounted{dir: dir, cmd: cmd, done: make(chan struct{}), stop: make(chan struct{})}
	go func() { cmd.Wait(); close(m.done) }()
	go hh.sampleRSS(cmd.Process.Pid, m.stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if st, err := os.Stat(filepath.Join(dir, "segments")); err == nil && st.IsDir() {
			return m, nil
		}
		select {
		case <-m.done:
			return nil, fmt.Errorf("scribefs mount exited early")
		default:
		}
		if time.Now().After(deadline) {
			m.unmount()
			return nil, fmt.Errorf("mount not ready after 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *mounted) segs() string { return filepath.Join(m.dir, "segments") }

// unmount stops the mount; calling it again does nothing.
func (m *mounted) unmount() {
	m.once.Do(func() {
		close(m.stop)
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(60 * time.Second):
			m.cmd.Process.Kill()
			<-m.done
		}
	})
}

// sampleRSS records the peak RssAnon of pid (bbolt's file-backed map does
// not count).
func (hh *h) sampleRSS(pid int, stop chan struct{}) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				for {
					cur := hh.peakRSS.Load()
					if kb*1024 <= cur || hh.peakRSS.CompareAndSwap(cur, kb*1024) {
						break
					}
				}
			}
		}
		f.Close()
	}
}

// baselines: raw S3 PUT and GET of the big object with the SDK (one stream
// and parallel parts/ranges, the faster counts), a page-cached local cat and
// a local cp + sync.
func (hh *h) baselines() error {
	ctx := context.Background()
	sz := hh.sz.big
	body := pattern(sz, 7)
	settle()
	secs, err := timeIt(func() error {
		_, err := hh.client.PutObject(ctx, &s3api.PutObjectInput{Bucket: &hh.bucket, Key: aws.String("raw/one"), Body: bytesReader(body)})
		return err
	})
	if err != nil {
		return err
	}
	hh.add(result{step: "1", what: "raw S3 PUT, one stream", seconds: secs, bytes: sz})
	settle()
	secs, err = timeIt(func() error { return multipartPut(ctx, hh.client, hh.bucket, "raw/multi", sz, 7, 16<<20, 8) })
	if err != nil {
		return err
	}
	hh.add(result{step: "1", what: "raw S3 PUT, multipart x8", seconds: secs, bytes: sz})
	secs, err = timeIt(func() error {
		out, err := hh.client.GetObject(ctx, &s3api.GetObjectInput{Bucket: &hh.bucket, Key: aws.String("raw/one")})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		_, err = io.CopyBuffer(io.Discard, out.Body, make([]byte, 1<<20))
		return err
	})
	if err != nil {
		return err
	}
	hh.add(result{step: "1", what: "raw S3 GET, one stream", seconds: secs, bytes: sz})
	secs, err = timeIt(func() error { return rangedGet(ctx, hh.client, hh.bucket, "raw/one", sz, 8<<20, 8) })
	if err != nil {
		return err
	}
	hh.add(result{step: "1", what: "raw S3 GET, 8 ranges x 8 MiB", seconds: secs, bytes: sz})

	local := filepath.Join(hh.work, "local.bin")
	if err := writeLocal(local, sz, 9); err != nil {
		return err
	}
	shell(hh.work, "cat local.bin > /dev/null")
	secs, err = bestOf(3, func() error { return shell(hh.work, "cat local.bin > /dev/null") })
	if err != nil {
		return err
	}
	hh.add(result{step: "1", what: "local cat (page cache)", seconds: secs, bytes: sz, note: "best of 3, after one untimed re-read"})
	settle()
	secs, err = timeIt(func() error { return shell(hh.work, "cp local.bin local.copy && sync") })
	if err != nil {
		return err
	}
	hh.add(result{step: "1", what: "local cp + sync", seconds: secs, bytes: sz})
	os.Remove(filepath.Join(hh.work, "local.copy"))
	return nil
}

func bytesReader(b []byte) io.ReadSeeker { return &seekBytes{b: b} }

type seekBytes struct {
	b   []byte
	off int64
}

func (s *seekBytes) Read(p []byte) (int, error) {
	if s.off >= int64(len(s.b)) {
		return 0, io.EOF
	}
	n := copy(p, s.b[s.off:])
	s.off += int64(n)
	return n, nil
}

func (s *seekBytes) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		s.off = off
	case io.SeekCurrent:
		s.off += off
	case io.SeekEnd:
		s.off = int64(len(s.b)) + off
	}
	return s.off, nil
}

func multipartPut(ctx context.Context, c *s3api.Client, bucket, k string, size int64, seed byte, part int64, par int) error {
	up, err := c.CreateMultipartUpload(ctx, &s3api.CreateMultipartUploadInput{Bucket: &bucket, Key: &k})
	if err != nil {
		return err
	}
	n := int((size + part - 1) / part)
	parts := make([]types.CompletedPart, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(par)
	block := patternBlock(seed)
	for i := 0; i < n; i++ {
		g.Go(func() error {
			length := min(part, size-int64(i)*part)
			body := make([]byte, length)
			for o := int64(0); o < length; o += int64(len(block)) {
				copy(body[o:], block)
			}
			out, err := c.UploadPart(gctx, &s3api.UploadPartInput{Bucket: &bucket, Key: &k, UploadId: up.UploadId,
				PartNumber: aws.Int32(int32(i + 1)), Body: bytesReader(body)})
			if err != nil {
				return err
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		c.AbortMultipartUpload(ctx, &s3api.AbortMultipartUploadInput{Bucket: &bucket, Key: &k, UploadId: up.UploadId})
		return err
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3api.CompleteMultipartUploadInput{Bucket: &bucket, Key: &k, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	return err
}

func rangedGet(ctx context.Context, c *s3api.Client, bucket, k string, size, span int64, par int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(par)
	for off := int64(0); off < size; off += span {
		g.Go(func() error {
			end := min(off+span, size) - 1
			out, err := c.GetObject(gctx, &s3api.GetObjectInput{Bucket: &bucket, Key: &k, Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, end))})
			if err != nil {
				return err
			}
			defer out.Body.Close()
			_, err = io.CopyBuffer(io.Discard, out.Body, make([]byte, 1<<20))
			return err
		})
	}
	return g.Wait()
}

// coldWarm: a segment archived by one host is read on a fresh host (empty
// hot tier, empty cache, all from S3), then read again (page cache).
func (hh *h) coldWarm() error {
	if err := hh.putRaw(key(bigID), hh.sz.big, 7); err != nil {
		return err
	}
	cfg, _ := hh.config("cold", "")
	m, err := hh.mount(cfg, "--read-only")
	if err != nil {
		return err
	}
	defer m.unmount()
	dropCaches()
	secs, err := timeIt(func() error { return shell(m.segs(), fmt.Sprintf("cat %d > /dev/null", bigID)) })
	if err != nil {
		return err
	}
	hh.add(result{step: "2", what: "scribefs cold cat", seconds: secs, bytes: hh.sz.big})
	// The first re-read is reported on its own: it is slower on any file
	// system, as the kernel moves every page to its active list (measured
	// with perf: no request reaches the mount). Warm reads are then measured
	// as the local one is: best of three, after one untimed re-read.
	secs, err = timeIt(func() error { return shell(m.segs(), fmt.Sprintf("cat %d > /dev/null", bigID)) })
	if err != nil {
		return err
	}
	hh.add(result{step: "3", what: "scribefs first re-read", seconds: secs, bytes: hh.sz.big, note: "pages activated"})
	secs, err = bestOf(3, func() error { return shell(m.segs(), fmt.Sprintf("cat %d > /dev/null", bigID)) })
	if err != nil {
		return err
	}
	hh.add(result{step: "3", what: "scribefs warm cat", seconds: secs, bytes: hh.sz.big, note: "best of 3, as local"})
	return nil
}

// smallReads: many small cold segments, one cat each.
func (hh *h) smallReads() error {
	g := new(errgroup.Group)
	g.SetLimit(16)
	for i := 0; i < hh.sz.smallCount; i++ {
		g.Go(func() error { return hh.putRaw(key(uint64(smallBase+i)), hh.sz.smallSize, byte(i)) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// the same loop over local files: what spawning 1000 cats costs
	local := filepath.Join(hh.work, "smalldir")
	os.MkdirAll(local, 0o755)
	for i := 0; i < hh.sz.smallCount; i++ {
		os.WriteFile(filepath.Join(local, strconv.Itoa(smallBase+i)), pattern(hh.sz.smallSize, byte(i)), 0o644)
	}
	secs, err := timeIt(func() error { return shell(local, hh.smallScript("")) })
	if err != nil {
		return err
	}
	hh.add(result{step: "4", what: fmt.Sprintf("local %d x %d KiB cats (page cache)", hh.sz.smallCount, hh.sz.smallSize>>10), seconds: secs, ops: float64(hh.sz.smallCount)})
	cfg, _ := hh.config("small", "")
	m, err := hh.mount(cfg, "--read-only")
	if err != nil {
		return err
	}
	defer m.unmount()
	secs, err = timeIt(func() error { return shell(m.segs(), hh.smallScript("")) })
	if err != nil {
		return err
	}
	hh.add(result{step: "4", what: fmt.Sprintf("scribefs %d x %d KiB cold cats", hh.sz.smallCount, hh.sz.smallSize>>10), seconds: secs, ops: float64(hh.sz.smallCount), note: "prefetch_segments = 4 (default)"})
	m.unmount()
	// The same with the prefetching of following segments turned off: one
	// GET per cat, each waited for.
	cfg, _ = hh.configWith("small-noprefetch", "", "prefetch_segments = 0")
	m2, err := hh.mount(cfg, "--read-only")
	if err != nil {
		return err
	}
	defer m2.unmount()
	secs, err = timeIt(func() error { return shell(m2.segs(), hh.smallScript("")) })
	if err != nil {
		return err
	}
	hh.add(result{step: "4", what: fmt.Sprintf("scribefs %d x %d KiB cold cats, no prefetch", hh.sz.smallCount, hh.sz.smallSize>>10), seconds: secs, ops: float64(hh.sz.smallCount), note: "prefetch_segments = 0"})
	return nil
}

// smallScript cats each small segment once; names in the peers' trees are
// the object names.
func (hh *h) smallScript(peerPrefix string) string {
	last := smallBase + hh.sz.smallCount - 1
	if peerPrefix == "" {
		return fmt.Sprintf("for i in $(seq %d %d); do cat $i > /dev/null; done", smallBase, last)
	}
	return fmt.Sprintf("for i in $(seq %d %d); do cat %s$(printf 'segment-%%016x.bin' $i) > /dev/null; done", smallBase, last, peerPrefix)
}

// listing: ls -l of lsCount segments against a local directory of as many
// files, and the S3 requests the mount made meanwhile.
func (hh *h) listing() error {
	g := new(errgroup.Group)
	g.SetLimit(32)
	for i := 0; i < hh.sz.lsCount; i++ {
		g.Go(func() error {
			_, err := hh.client.PutObject(context.Background(), &s3api.PutObjectInput{Bucket: &hh.bucket, Key: aws.String(key(uint64(lsBase + i))), Body: strings.NewReader("x")})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	local := filepath.Join(hh.work, "lsdir")
	os.MkdirAll(local, 0o755)
	for i := 0; i < hh.sz.lsCount; i++ {
		os.WriteFile(filepath.Join(local, strconv.Itoa(lsBase+i)), []byte("x"), 0o644)
	}
	cfg, _ := hh.config("ls", "")
	m, err := hh.mount(cfg, "--read-only")
	if err != nil {
		return err
	}
	defer m.unmount()
	total := hh.sz.lsCount + hh.sz.smallCount + 1
	count := func(dir string) error {
		out, err := exec.Command("bash", "-c", "ls -l "+dir+" | wc -l").Output()
		if err != nil {
			return err
		}
		if n, _ := strconv.Atoi(strings.TrimSpace(string(out))); n < hh.sz.lsCount {
			return fmt.Errorf("ls -l %s listed %d entries, want at least %d", dir, n, hh.sz.lsCount)
		}
		return nil
	}
	count(local) // warm the dentry cache, as the mount's index is warm
	secs, err := timeIt(func() error { return count(local) })
	if err != nil {
		return err
	}
	hh.add(result{step: "5", what: fmt.Sprintf("local ls -l, %d files", hh.sz.lsCount), seconds: secs, ops: float64(hh.sz.lsCount)})
	before := hh.proxy.n.Load()
	secs, err = timeIt(func() error { return count(m.segs()) })
	if err != nil {
		return err
	}
	reqs := hh.proxy.n.Load() - before
	hh.add(result{step: "5", what: fmt.Sprintf("scribefs ls -l (first), %d segments", total), seconds: secs, ops: float64(total), note: fmt.Sprintf("%d S3 requests", reqs)})
	before = hh.proxy.n.Load()
	secs, err = timeIt(func() error { return count(m.segs()) })
	if err != nil {
		return err
	}
	hh.add(result{step: "5", what: fmt.Sprintf("scribefs ls -l (again), %d segments", total), seconds: secs, ops: float64(total), note: fmt.Sprintf("%d S3 requests", hh.proxy.n.Load()-before)})
	return nil
}

// write: a big segment written through the mount, timed through close().
func (hh *h) write() error {
	cfg, _ := hh.config("write", "archive_after_secs = 86400")
	m, err := hh.mount(cfg)
	if err != nil {
		return err
	}
	defer m.unmount()
	src := filepath.Join(hh.work, "local.bin")
	settle()
	secs, err := timeIt(func() error { return shell(m.segs(), fmt.Sprintf("cp %s %d", src, writeID)) })
	if err != nil {
		return err
	}
	hh.add(result{step: "6", what: "scribefs write via cp (to close)", seconds: secs, bytes: hh.sz.big})
	return nil
}

// archival: segments of 64 MiB archived by the store (archive --all through
// the running mount), against raw PUTs of the same bytes with the same
// parallelism.
func (hh *h) archival() error {
	n := int(hh.sz.archive / (64 << 20))
	cfg, _ := hh.config("archive", "archive_after_secs = 86400")
	m, err := hh.mount(cfg)
	if err != nil {
		return err
	}
	defer m.unmount()
	src := filepath.Join(hh.work, "seg64")
	if err := writeLocal(src, 64<<20, 3); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := shell(m.segs(), fmt.Sprintf("cp %s %d", src, 500+i)); err != nil {
			return err
		}
	}
	settle()
	secs, err := timeIt(func() error {
		out, err := exec.Command(hh.bin, "--config", cfg, "archive", "--all").CombinedOutput()
		if err != nil {
			return fmt.Errorf("archive --all: %v: %s", err, lastLines(string(out), 3))
		}
		return nil
	})
	if err != nil {
		return err
	}
	hh.add(result{step: "7", what: fmt.Sprintf("scribefs archive --all, %d x 64 MiB", n), seconds: secs, bytes: int64(n) << 26})
	body := pattern(64<<20, 3)
	settle()
	secs, err = timeIt(func() error {
		g := new(errgroup.Group)
		g.SetLimit(4)
		for i := 0; i < n; i++ {
			g.Go(func() error {
				_, err := hh.client.PutObject(context.Background(), &s3api.PutObjectInput{Bucket: &hh.bucket, Key: aws.String(fmt.Sprintf("raw/a%d", i)), Body: bytesReader(body)})
				return err
			})
		}
		return g.Wait()
	})
	if err != nil {
		return err
	}
	hh.add(result{step: "7", what: fmt.Sprintf("raw S3 PUT x4, %d x 64 MiB", n), seconds: secs, bytes: int64(n) << 26})
	return nil
}

// fio: 4 KiB random reads across a large cold segment.
func (hh *h) fio() error {
	if _, err := exec.LookPath("fio"); err != nil {
		return fmt.Errorf("fio not installed (apt-get install fio)")
	}
	if err := hh.putRaw(key(fioID), hh.sz.fioSize, 5); err != nil {
		return err
	}
	cfg, _ := hh.config("fio", "")
	m, err := hh.mount(cfg, "--read-only")
	if err != nil {
		return err
	}
	defer m.unmount()
	out, err := exec.Command("fio", "--name=rand", "--filename="+filepath.Join(m.segs(), strconv.Itoa(fioID)), "--readonly",
		"--rw=randread", "--bs=4k", fmt.Sprintf("--size=%d", hh.sz.fioSize), "--ioengine=psync", "--numjobs=4", "--group_reporting",
		"--time_based", fmt.Sprintf("--runtime=%d", hh.sz.fioSecs), "--output-format=json").Output()
	if err != nil {
		return fmt.Errorf("fio: %v", err)
	}
	var rep struct {
		Jobs []struct {
			Read struct {
				IOPS   float64 `json:"iops"`
				ClatNs struct {
					Percentile map[string]float64 `json:"percentile"`
				} `json:"clat_ns"`
			} `json:"read"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal(out, &rep); err != nil || len(rep.Jobs) == 0 {
		return fmt.Errorf("fio output: %v", err)
	}
	r := rep.Jobs[0].Read
	p := r.ClatNs.Percentile
	hh.add(result{step: "8", what: fmt.Sprintf("fio 4 KiB randread, %d MiB cold, 4 jobs", hh.sz.fioSize>>20), seconds: float64(hh.sz.fioSecs), ops: r.IOPS * float64(hh.sz.fioSecs),
		note: fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms", p["50.000000"]/1e6, p["99.000000"]/1e6, p["99.900000"]/1e6)})
	return nil
}
