package s3

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/internal/miniotest"
)

// BenchmarkS3 runs the shared backend benchmarks against MinIO; compare
// with BenchmarkRawS3 from the same run, the SDK alone on the same server.
func BenchmarkS3(b *testing.B) {
	srv := miniotest.Start(b)
	backendtest.RunBenchmarks(b, func(b *testing.B) backend.Backend {
		cfg := testConfig(srv.Endpoint, srv.NewBucket(b))
		be, err := New(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		return be
	})
}

// BenchmarkRawS3 is the baseline: PutObject and GetObject with the SDK.
func BenchmarkRawS3(b *testing.B) {
	srv := miniotest.Start(b)
	client := srv.Client()
	for _, size := range backendtest.BenchSizes {
		data := backendtest.RandomBytes(size, size)
		name := fmt.Sprintf("%dKiB", size>>10)
		b.Run("Put/"+name, func(b *testing.B) {
			bucket := srv.NewBucket(b)
			b.SetBytes(size)
			for i := 0; i < b.N; i++ {
				_, err := client.PutObject(ctx, &s3api.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(fmt.Sprintf("k%d", i%64)), Body: bytes.NewReader(data)})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Get/"+name, func(b *testing.B) {
			bucket := srv.NewBucket(b)
			for i := 0; i < 8; i++ {
				if _, err := client.PutObject(ctx, &s3api.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(fmt.Sprintf("k%d", i)), Body: bytes.NewReader(data)}); err != nil {
					b.Fatal(err)
				}
			}
			buf := make([]byte, size)
			b.SetBytes(size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out, err := client.GetObject(ctx, &s3api.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(fmt.Sprintf("k%d", i%8))})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(out.Body, buf); err != nil {
					b.Fatal(err)
				}
				out.Body.Close()
			}
		})
	}
}
