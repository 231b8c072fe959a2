// Package miniotest starts a real MinIO server for tests: on a free loopback
// port, with a temporary data directory, stopped when the test ends.
//
// The server binary is looked up in $MINIO_BIN, then in .tools/bin/minio at
// the module root (where `make minio` installs it), then on $PATH. When it is
// missing the test is skipped on a developer machine and fails under CI=true,
// so CI can never pass by skipping the S3 tests.
package miniotest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Credentials of every test server.
const (
	AccessKey = "scribefs-test"
	SecretKey = "scribefs-test-secret-key"
	Region    = "us-east-1"
)

// Server is a running MinIO.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Addr     string // 127.0.0.1:PORT
	DataDir  string
	bin      string
	mu       sync.Mutex
	cmd      *exec.Cmd
}

// Binary returns the MinIO server binary path, or "" when there is none.
func Binary() string {
	if p := os.Getenv("MINIO_BIN"); p != "" {
		return p
	}
	if root := moduleRoot(); root != "" {
		p := filepath.Join(root, ".tools", "bin", "minio")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	return ""
}

// Require fails the test under CI, and skips it elsewhere, when MinIO is not
// installed.
func Require(t testing.TB) string {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("MinIO server binary not found (set MINIO_BIN or run `make minio`); CI must not skip S3 tests")
		}
		t.Skip("MinIO server binary not found; run `make minio`")
	}
	return bin
}

// StartMain starts a server shared by a whole test binary (from TestMain).
// It fails under CI=true and returns (nil, nil, nil) elsewhere when MinIO is
// not installed, so callers can skip.
func StartMain() (s *Server, stop func(), err error) {
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") != "" {
			return nil, nil, fmt.Errorf("MinIO server binary not found (set MINIO_BIN or run `make minio`); CI must not skip S3 tests")
		}
		return nil, nil, nil
	}
	dir, err := os.MkdirTemp("", "scribefs-minio-")
	if err != nil {
		return nil, nil, err
	}
	s = &Server{bin: bin, DataDir: dir}
	if err := s.start(""); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return s, func() { s.Stop(); os.RemoveAll(dir) }, nil
}

// Start starts a server for the test and stops it at cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Require(t)
	dir, err := os.MkdirTemp("", "scribefs-minio-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{bin: bin, DataDir: dir}
	if err := s.start(""); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		os.RemoveAll(dir)
	})
	return s
}

func (s *Server) start(addr string) error {
	if addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addr = l.Addr().String()
		l.Close()
	}
	cmd := exec.Command(s.bin, "server", "--quiet", "--address", addr, "--console-address", "127.0.0.1:0", s.DataDir)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+AccessKey,
		"MINIO_ROOT_PASSWORD="+SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(filepath.Join(os.TempDir(), "scribefs-minio-"+strings.ReplaceAll(addr, ":", "_")+".log"))
	if err == nil {
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start minio: %w", err)
	}
	s.mu.Lock()
	s.cmd, s.Addr, s.Endpoint = cmd, addr, "http://"+addr
	s.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			// "Ready" can come before the object layer is: on a loaded
			// machine a bucket created at once got 503 "Server not
			// initialized yet". Ready means a listing works too.
			if resp.StatusCode == 200 && s.listable() {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Stop()
	return fmt.Errorf("minio at %s not ready after 60s", addr)
}

// listable reports whether the server answers a bucket listing.
func (s *Server) listable() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.Client().ListBuckets(ctx, &s3.ListBucketsInput{})
	return err == nil
}

// Stop stops the server (data stays); Restart starts it again on the same
// address. Together they simulate an outage.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
}

// Restart starts a stopped server on its old address.
func (s *Server) Restart() error { return s.start(s.Addr) }

// Client returns an SDK client for setting up and inspecting test state.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})
}

// NewBucket creates a uniquely named bucket.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "test-" + hex.EncodeToString(b[:])
	if _, err := s.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return name
}

func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
