package backend_test

// Adversarial review of backend.Fill and its callers: a source that ends
// with io.ErrUnexpectedEOF is a failed put in every backend, whatever the
// size it declared and wherever the cut falls (after every declared byte,
// at a part or block boundary, returned together with the last bytes).

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/backend/compress"
	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/backend/s3"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
)

// cutSource yields data and then fails with io.ErrUnexpectedEOF; with
// together set, the error comes with the last bytes (n > 0).
type cutSource struct {
	data     []byte
	together bool
}

func (c *cutSource) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	if len(c.data) == 0 && c.together {
		return n, io.ErrUnexpectedEOF
	}
	return n, nil
}

func TestReviewFillCutSourceFailsPut(t *testing.T) {
	type factory struct {
		name string
		new  func(t *testing.T) backend.Backend
	}
	openLocal := func(t *testing.T) *local.Backend {
		b, err := local.Open(filepath.Join(t.TempDir(), "hot.db"), local.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	srv := miniotest.Start(t)
	openS3 := func(t *testing.T) *s3.Backend {
		b, err := s3.New(context.Background(), s3.Config{Bucket: srv.NewBucket(t), Region: miniotest.Region, Endpoint: srv.Endpoint,
			AccessKeyID: miniotest.AccessKey, SecretAccessKey: miniotest.SecretKey, PathStyle: true,
			MultipartThreshold: 5 << 20, PartSize: 5 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	factories := []factory{
		{"local", func(t *testing.T) backend.Backend { return openLocal(t) }},
		{"compress-zstd", func(t *testing.T) backend.Backend {
			b, err := compress.New(openLocal(t), compress.Config{Mode: compress.Zstd})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{"s3", func(t *testing.T) backend.Backend { return openS3(t) }},
		{"compress-gzip-s3", func(t *testing.T) backend.Backend {
			b, err := compress.New(openS3(t), compress.Config{Mode: compress.Gzip})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
	}
	ctx := context.Background()
	for _, f := range factories {
		t.Run(f.name, func(t *testing.T) {
			b := f.new(t)
			old := backendtest.RandomBytes(70, 5000)
			if _, err := b.Put(ctx, 1, bytes.NewReader(old), backend.PutOptions{Size: int64(len(old))}); err != nil {
				t.Fatal(err)
			}
			// Lengths at the block size, at the 5 MiB part size and threshold,
			// and off them.
			for _, n := range []int{1, segment.BlockSize, 5 << 20, 5<<20 + 1, 11 << 20} {
				data := backendtest.RandomBytes(int64(n), n)
				for _, size := range []int64{int64(n), -1} {
					for _, together := range []bool{false, true} {
						name := fmt.Sprintf("n=%d size=%d together=%v", n, size, together)
						info, err := b.Put(ctx, 1, &cutSource{data: data, together: together}, backend.PutOptions{Size: size})
						if err == nil {
							t.Fatalf("%s: a source ending in io.ErrUnexpectedEOF was stored: %+v", name, info)
						}
						r, err := b.Get(ctx, 1, backend.Whole)
						if err != nil {
							t.Fatalf("%s: get after the failed put: %v", name, err)
						}
						got, err := io.ReadAll(r)
						r.Close()
						if err != nil || !bytes.Equal(got, old) {
							t.Fatalf("%s: after the failed put segment 1 holds %d bytes (%v), want the old %d", name, len(got), err, len(old))
						}
					}
				}
			}
		})
	}
}
