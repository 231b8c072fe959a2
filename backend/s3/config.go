package s3

import (
	"fmt"
	"strings"
	"time"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// Defaults applied by New to zero-valued Config fields.
const (
	DefaultPoolSize           = 10
	DefaultTimeout            = 30 * time.Second
	DefaultPrefix             = "segments/"
	DefaultMultipartThreshold = 16 << 20
	DefaultPartSize           = 8 << 20
	DefaultConcurrency        = 4
	// DefaultRegion is used when neither Config.Region nor the AWS
	// environment names one; MinIO and most S3-compatible stores accept it.
	DefaultRegion = "us-east-1"
)

// S3 limits the configuration is checked against.
const (
	minPartSize   = 5 << 20         // S3 minimum for every part but the last
	maxPartSize   = 5 << 30         // S3 maximum part size
	maxPutSize    = 5 << 30         // S3 maximum size of a single PutObject
	maxParts      = 10000           // S3 maximum number of parts
	maxObjectSize = 5 << 40         // S3 maximum object size
	maxBlocksMeta = 1500            // bytes of base64 block sums kept in user metadata
	healthTimeout = 5 * time.Second // Health answers within this, whatever Timeout is
)

// Config describes one bucket. The field names follow the upstream Scribe
// Ledger [storage.s3] table (bucket, region, endpoint, access_key_id,
// secret_access_key, path_style, pool_size, timeout_secs); the upstream
// max_retries belongs to the retry wrapper (backend/retry), not here, so
// that one layer owns the retry count.
type Config struct {
	// Bucket is required.
	Bucket string
	// Region is the bucket's region. Empty: the AWS environment's region
	// (AWS_REGION, shared config), else DefaultRegion.
	Region string
	// Endpoint is the S3 API URL, for MinIO and other S3-compatible stores;
	// empty means AWS. A value without a scheme gets https://.
	Endpoint string
	// AccessKeyID and SecretAccessKey, when set, are used as static
	// credentials; when both are empty the standard AWS chain applies
	// (environment, shared config, IAM role). Setting only one is an error.
	AccessKeyID     string
	SecretAccessKey string
	// PathStyle addresses the bucket as endpoint/bucket/key instead of
	// bucket.endpoint/key, as MinIO usually needs.
	PathStyle bool
	// PoolSize bounds the connections to the endpoint, in use and idle.
	// Zero means DefaultPoolSize.
	PoolSize int
	// Timeout is an idle timeout: a request during which no bytes move in
	// either direction for this long is cancelled and fails with
	// backend.ErrUnavailable. It is not a bound on the total duration, so a
	// large transfer that keeps flowing may take as long as it needs. Zero
	// means DefaultTimeout; negative disables it.
	Timeout time.Duration
	// Prefix is prepended verbatim to every object key. Empty means
	// DefaultPrefix ("segments/"), the layout Scribe Ledger nodes use.
	Prefix string
	// InsecureSkipVerify disables TLS certificate verification. The caller
	// is expected to warn about it.
	InsecureSkipVerify bool
	// MultipartThreshold is the largest segment stored with a single
	// PutObject, buffered in memory; larger ones use a multipart upload.
	// Zero means DefaultMultipartThreshold; at most 5 GiB.
	MultipartThreshold int64
	// PartSize is the multipart part size: a multiple of segment.BlockSize
	// between 5 MiB and 5 GiB. Zero means DefaultPartSize. It is raised for
	// segments that would otherwise need more than 10,000 parts.
	PartSize int64
	// Concurrency is the number of parts uploaded in parallel by one Put;
	// a Put holds at most Concurrency+1 part buffers. Zero means
	// DefaultConcurrency.
	Concurrency int
	// ReadOnly makes Put, Delete and AbortIncompleteUploads fail with
	// backend.ErrReadOnly without contacting the store.
	ReadOnly bool
}

// String renders the config for logs with the secret redacted, so a Config
// printed with %v or %+v never leaks it.
func (c Config) String() string {
	secret := ""
	if c.SecretAccessKey != "" {
		secret = "REDACTED"
	}
	return fmt.Sprintf("{Bucket:%s Region:%s Endpoint:%s AccessKeyID:%s SecretAccessKey:%s PathStyle:%t PoolSize:%d Timeout:%v Prefix:%q InsecureSkipVerify:%t MultipartThreshold:%d PartSize:%d Concurrency:%d ReadOnly:%t}",
		c.Bucket, c.Region, c.Endpoint, c.AccessKeyID, secret, c.PathStyle, c.PoolSize, c.Timeout, c.Prefix,
		c.InsecureSkipVerify, c.MultipartThreshold, c.PartSize, c.Concurrency, c.ReadOnly)
}

// GoString is String, so %#v does not leak the secret either.
func (c Config) GoString() string { return "s3.Config" + c.String() }

// withDefaults returns the config with defaults applied, or an error
// wrapping backend.ErrInvalid naming the first bad field.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("s3 config: %w: "+format, append([]any{backend.ErrInvalid}, args...)...)
	}
	if c.Bucket == "" {
		return bad("bucket is required")
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		return bad("access_key_id and secret_access_key must be set together")
	}
	if c.Endpoint != "" && !strings.Contains(c.Endpoint, "://") {
		c.Endpoint = "https://" + c.Endpoint
	}
	if c.PoolSize == 0 {
		c.PoolSize = DefaultPoolSize
	}
	if c.PoolSize < 0 {
		return bad("pool size %d is negative", c.PoolSize)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.MultipartThreshold == 0 {
		c.MultipartThreshold = DefaultMultipartThreshold
	}
	if c.MultipartThreshold < 0 || c.MultipartThreshold > maxPutSize {
		return bad("multipart threshold %d is outside 0..%d", c.MultipartThreshold, int64(maxPutSize))
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.PartSize < minPartSize || c.PartSize > maxPartSize || c.PartSize%segment.BlockSize != 0 {
		return bad("part size %d must be a multiple of %d between %d and %d", c.PartSize, segment.BlockSize, minPartSize, int64(maxPartSize))
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Concurrency < 0 {
		return bad("concurrency %d is negative", c.Concurrency)
	}
	return c, nil
}
