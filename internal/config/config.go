package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config is the whole configuration. The zero value is not useful: start
// from Default or Load.
type Config struct {
	Storage Storage
	Cache   Cache
	Tiering Tiering

	// Source is the file the configuration was read from, or
	// DefaultSource when no file was found. Errors and warnings name it.
	Source string

	// loadWarnings are found while loading (file permissions, ignored
	// variables); Warnings adds those that follow from the values.
	loadWarnings []string
}

// DefaultSource is Config.Source when no file was read.
const DefaultSource = "embedded default"

// Storage is where segments live.
type Storage struct {
	// MaxSegmentBytes caps one segment (file); writes beyond it fail.
	// Key max_segment_bytes, default 5 TiB, S3's object size limit.
	MaxSegmentBytes int64
	Hot             Hot
	// S3 is the cold tier; nil means there is none and everything stays in
	// the hot tier. Key [storage.s3].
	S3 *S3
}

// Hot is the bbolt hot tier, key [storage.hot].
type Hot struct {
	// Path is the bbolt file, always absolute. Key path, default
	// $XDG_DATA_HOME/scribefs/hot.db (~/.local/share/scribefs/hot.db).
	Path string
	// MaxBytes is the hot tier's budget. Key max_bytes, default 10 GiB.
	MaxBytes int64
	// SpoolDir is where open files are staged; "" means a "spool" directory
	// beside Path. Use Spool for the effective directory. Key spool_dir.
	SpoolDir string
}

// Spool returns the directory where open files are staged: SpoolDir, or a
// "spool" directory beside Path when SpoolDir is empty. It is derived on
// demand so that a flag changing Path moves the default spool with it.
func (h Hot) Spool() string {
	if h.SpoolDir != "" {
		return h.SpoolDir
	}
	return filepath.Join(filepath.Dir(h.Path), "spool")
}

// S3 is the S3 (or MinIO) cold tier. The first nine keys are scribe-ledger's
// [storage.s3] table, unchanged; the rest are scribefs's.
type S3 struct {
	// Bucket is required whenever the section exists.
	Bucket string
	// Region; "" leaves it to the AWS SDK's own lookup (AWS_REGION,
	// ~/.aws/config).
	Region string
	// Endpoint is an http:// or https:// URL for MinIO or another
	// S3-compatible service; "" means AWS.
	Endpoint string
	// AccessKeyID and SecretAccessKey are static credentials; when empty the
	// AWS SDK's default chain applies (environment, IAM role, ...).
	AccessKeyID     string
	SecretAccessKey Secret
	// PathStyle addresses buckets as endpoint/bucket rather than
	// bucket.endpoint, as MinIO needs. Default false.
	PathStyle bool
	// PoolSize is the number of concurrent connections, at least 1.
	// Default 10.
	PoolSize int
	// Timeout bounds one S3 request. Key timeout_secs, default 30.
	Timeout time.Duration
	// MaxRetries is how often a failed request is retried (0: never).
	// Default 3.
	MaxRetries int

	// Prefix is prepended to every object key. Default "segments/".
	Prefix string
	// Refresh is how often the listing of the bucket is refreshed. Key
	// refresh_secs, default 60.
	Refresh time.Duration
	// InsecureSkipVerify disables TLS certificate checks; for test setups
	// only, and Warnings says so.
	InsecureSkipVerify bool
	// AssumeSoleWriter lets a writable mount write to a store that
	// ignores conditional puts, where the writer lease cannot keep two
	// writers apart; for buckets no other host ever mounts writable. Key
	// assume_sole_writer, default false.
	AssumeSoleWriter bool
}

// Cache is the in-memory LRU block cache, key [cache].
type Cache struct {
	// MaxBytes is its budget; 0 disables it. Key max_bytes, default 256 MiB.
	MaxBytes int64
	// PrefetchSegments is how many following small segments are fetched
	// ahead once cold segments are read one after the other in id order
	// (a replay); 0 disables it. Key prefetch_segments, default 4.
	PrefetchSegments int
}

// Tiering decides when segments move from the hot to the cold tier, key
// [tiering]. It matters only when there is a cold tier.
type Tiering struct {
	// ArchiveAfter is how long a segment stays unchanged before it is
	// copied to the cold tier; 0 means write-through. Key
	// archive_after_secs, default 3600.
	ArchiveAfter time.Duration
	// CheckInterval is how often the tierer looks for segments to archive.
	// Key check_interval_secs, default 300.
	CheckInterval time.Duration
	// Compression of archived segments: CompressionNone (default),
	// CompressionGzip or CompressionZstd.
	Compression string
	// VerifyMerkle makes a whole read of a cold segment through the mount
	// check the Merkle root its Scribe Ledger sidecar records (EIO on a
	// mismatch). Key verify_merkle, default false.
	VerifyMerkle bool
}

// Compression values.
const (
	CompressionNone = "none"
	CompressionGzip = "gzip"
	CompressionZstd = "zstd"
)

// Default returns the configuration used when there is no file: a hot tier
// under the user's XDG data directory, no cold tier. It reads XDG_DATA_HOME
// and HOME from the process environment.
func Default() *Config { return defaults(os.Getenv) }

func defaults(env func(string) string) *Config {
	hotPath := ""
	if dir := xdgDir(env, "XDG_DATA_HOME", ".local/share"); dir != "" {
		hotPath = filepath.Join(dir, "scribefs", "hot.db")
	}
	return &Config{
		Storage: Storage{
			MaxSegmentBytes: 5 << 40,
			Hot:             Hot{Path: hotPath, MaxBytes: 10 << 30},
		},
		Cache: Cache{MaxBytes: 256 << 20, PrefetchSegments: 4},
		Tiering: Tiering{
			ArchiveAfter:  time.Hour,
			CheckInterval: 5 * time.Minute,
			Compression:   CompressionNone,
		},
		Source: DefaultSource,
	}
}

// NewS3 returns a cold tier for bucket with every other setting at its
// default, as the S3_BUCKET variable creates it. cmd uses it for a bucket
// flag.
func NewS3(bucket string) *S3 {
	return &S3{
		Bucket:     bucket,
		PoolSize:   10,
		Timeout:    30 * time.Second,
		MaxRetries: 3,
		Prefix:     "segments/",
		Refresh:    time.Minute,
	}
}

// xdgDir returns the XDG base directory named by variable, or
// $HOME/fallback. Per the XDG spec a relative value is ignored. It returns
// "" when neither is usable.
func xdgDir(env func(string) string, variable, fallback string) string {
	if dir := env(variable); filepath.IsAbs(dir) {
		return dir
	}
	if home := env("HOME"); filepath.IsAbs(home) {
		return filepath.Join(home, fallback)
	}
	return ""
}

// Validate checks the values for range and consistency. Load calls it;
// cmd calls it again after applying flags. The error is an *Error naming
// the key (and Source), one line.
func (c *Config) Validate() error {
	for _, check := range c.checks() {
		if check.bad {
			return &Error{File: c.Source, Key: check.key, Err: errors.New(check.msg)}
		}
	}
	return nil
}

type check struct {
	key string
	bad bool
	msg string
}

func (c *Config) checks() []check {
	hot := c.Storage.Hot
	checks := []check{
		atLeast("storage.max_segment_bytes", c.Storage.MaxSegmentBytes, 1),
		absPath("storage.hot.path", hot.Path, "the default needs XDG_DATA_HOME or HOME"),
		atLeast("storage.hot.max_bytes", hot.MaxBytes, 0),
	}
	if hot.SpoolDir != "" {
		checks = append(checks, absPath("storage.hot.spool_dir", hot.SpoolDir, ""))
	}
	if s := c.Storage.S3; s != nil {
		checks = append(checks,
			check{"storage.s3.bucket", s.Bucket == "", "must name a bucket, got none"},
			check{"storage.s3.endpoint", s.Endpoint != "" && !isHTTPURL(s.Endpoint), "must be an http:// or https:// URL"},
			atLeast("storage.s3.pool_size", int64(s.PoolSize), 1),
			atLeastSecs("storage.s3.timeout_secs", s.Timeout, 1),
			atLeast("storage.s3.max_retries", int64(s.MaxRetries), 0),
			atLeastSecs("storage.s3.refresh_secs", s.Refresh, 1),
		)
	}
	return append(checks,
		atLeast("cache.max_bytes", c.Cache.MaxBytes, 0),
		atLeast("cache.prefetch_segments", int64(c.Cache.PrefetchSegments), 0),
		atLeastSecs("tiering.archive_after_secs", c.Tiering.ArchiveAfter, 0),
		atLeastSecs("tiering.check_interval_secs", c.Tiering.CheckInterval, 1),
		check{"tiering.compression", !validCompression(c.Tiering.Compression),
			fmt.Sprintf("must be %q, %q or %q, got %q", CompressionNone, CompressionGzip, CompressionZstd, c.Tiering.Compression)},
	)
}

func atLeast(key string, v, least int64) check {
	return check{key, v < least, fmt.Sprintf("must be at least %d, got %d", least, v)}
}

// atLeastSecs checks a duration whose key is in seconds.
func atLeastSecs(key string, d time.Duration, least int64) check {
	return check{key, d < time.Duration(least)*time.Second, fmt.Sprintf("must be at least %d, got %s", least, secs(d))}
}

func absPath(key, p, whyEmpty string) check {
	msg := fmt.Sprintf("must be an absolute path, got %q", p)
	switch {
	case p == "" && whyEmpty != "":
		msg = "must be set to an absolute path (" + whyEmpty + ")"
	case strings.HasPrefix(p, "~"):
		msg += " (~ is not expanded)"
	}
	return check{key, !filepath.IsAbs(p), msg}
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func validCompression(s string) bool {
	switch s {
	case CompressionNone, CompressionGzip, CompressionZstd:
		return true
	}
	return false
}

// secs renders d in the seconds the file uses: "30", "-5", "0.5".
func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// Warnings returns problems that do not stop scribefs but that the user
// should hear about: a secret in a file others can read, TLS verification
// turned off, S3 variables ignored because there is no cold tier.
func (c *Config) Warnings() []string {
	w := append([]string(nil), c.loadWarnings...)
	if c.Storage.S3 != nil && c.Storage.S3.InsecureSkipVerify {
		w = append(w, "storage.s3.insecure_skip_verify is true: the S3 endpoint's TLS certificate is not checked, so anyone on the path can read and alter segments")
	}
	return w
}

// Redacted renders the effective configuration as a TOML document that Load
// accepts, with the secret key shown as "***". It is what a "show config"
// command prints.
func (c *Config) Redacted() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# source: %s\n", quote(c.Source))
	section := func(name string, kvs []keyValue) {
		fmt.Fprintf(&b, "\n[%s]\n", name)
		for _, kv := range kvs {
			fmt.Fprintf(&b, "%s = %s\n", kv.key, kv.value)
		}
	}
	section("storage", []keyValue{
		{"max_segment_bytes", quote(formatSize(c.Storage.MaxSegmentBytes))},
	})
	hot := c.Storage.Hot
	section("storage.hot", []keyValue{
		{"path", quote(hot.Path)},
		{"max_bytes", quote(formatSize(hot.MaxBytes))},
		{"spool_dir", quote(hot.SpoolDir)},
	})
	if c.Storage.S3 != nil {
		section("storage.s3", c.Storage.S3.keyValues())
	}
	section("cache", []keyValue{
		{"max_bytes", quote(formatSize(c.Cache.MaxBytes))},
		{"prefetch_segments", strconv.Itoa(c.Cache.PrefetchSegments)},
	})
	section("tiering", []keyValue{
		{"archive_after_secs", secs(c.Tiering.ArchiveAfter)},
		{"check_interval_secs", secs(c.Tiering.CheckInterval)},
		{"compression", quote(c.Tiering.Compression)},
		{"verify_merkle", strconv.FormatBool(c.Tiering.VerifyMerkle)},
	})
	return b.String()
}

// String renders the section as a one-line TOML inline table with the
// secret key shown as "***", so that logging an S3 with %v is safe.
func (s S3) String() string {
	kvs := s.keyValues()
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		parts[i] = kv.key + " = " + kv.value
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

type keyValue struct{ key, value string }

func (s S3) keyValues() []keyValue {
	return []keyValue{
		{"bucket", quote(s.Bucket)},
		{"region", quote(s.Region)},
		{"endpoint", quote(s.Endpoint)},
		{"access_key_id", quote(s.AccessKeyID)},
		{"secret_access_key", quote(s.SecretAccessKey.String())},
		{"path_style", strconv.FormatBool(s.PathStyle)},
		{"pool_size", strconv.Itoa(s.PoolSize)},
		{"timeout_secs", secs(s.Timeout)},
		{"max_retries", strconv.Itoa(s.MaxRetries)},
		{"prefix", quote(s.Prefix)},
		{"refresh_secs", secs(s.Refresh)},
		{"insecure_skip_verify", strconv.FormatBool(s.InsecureSkipVerify)},
		{"assume_sole_writer", strconv.FormatBool(s.AssumeSoleWriter)},
	}
}

// quote renders s as a TOML basic string. Go's %q is close but may emit
// \x escapes, which TOML lacks.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
