package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fullConfig is the schema example, every key given.
const fullConfig = `
[storage]
max_segment_bytes = 5497558138880

[storage.hot]
path = "/var/lib/scribefs/hot.db"
max_bytes = 10737418240
spool_dir = ""

[storage.s3]
bucket = "my-scribe-bucket"
region = "us-east-1"
endpoint = "http://localhost:9000"
access_key_id = "minioadmin"
secret_access_key = "minioadmin"
path_style = true
pool_size = 10
timeout_secs = 30
max_retries = 3
prefix = "segments/"
refresh_secs = 60
insecure_skip_verify = false

[cache]
max_bytes = 268435456

[tiering]
archive_after_secs = 3600
check_interval_secs = 300
compression = "none"
`

// envOf returns a lookup over m, so tests never read or change the process
// environment.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// homeEnv is an environment with only HOME, pointing at a fresh directory.
func homeEnv(t *testing.T) map[string]string {
	return map[string]string{"HOME": t.TempDir()}
}

func mustWrite(t *testing.T, path, content string, mode fs.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask may have narrowed it
		t.Fatal(err)
	}
	return path
}

// mustConfigFile writes content to a 0600 file in a fresh directory.
func mustConfigFile(t *testing.T, content string) string {
	t.Helper()
	return mustWrite(t, filepath.Join(t.TempDir(), "config.toml"), content, 0o600)
}

func mustLoad(t *testing.T, path string, env map[string]string) *Config {
	t.Helper()
	cfg, err := Load(path, envOf(env))
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return cfg
}

// mustFail loads and checks that the error is a one-line *Error holding
// every fragment.
func mustFail(t *testing.T, path string, env map[string]string, fragments ...string) *Error {
	t.Helper()
	cfg, err := Load(path, envOf(env))
	if err == nil {
		t.Fatalf("Load succeeded, want error with %q; got %+v", fragments, cfg)
	}
	mustOneLineHolding(t, err, fragments...)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T is not *Error: %v", err, err)
	}
	return ce
}

func mustOneLineHolding(t *testing.T, err error, fragments ...string) {
	t.Helper()
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not contain %q", msg, f)
		}
	}
}

func TestDefault(t *testing.T) {
	cfg := Default()
	want := defaults(os.Getenv)
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Default() = %+v, want %+v", cfg, want)
	}
	if cfg.Source != DefaultSource || cfg.Storage.S3 != nil {
		t.Errorf("Default(): Source %q, S3 %v; want embedded default without cold tier", cfg.Source, cfg.Storage.S3)
	}
	if cfg.Storage.MaxSegmentBytes != 5<<40 || cfg.Storage.Hot.MaxBytes != 10<<30 || cfg.Cache.MaxBytes != 256<<20 ||
		cfg.Tiering.ArchiveAfter != time.Hour || cfg.Tiering.CheckInterval != 300*time.Second || cfg.Tiering.Compression != "none" {
		t.Errorf("Default() values: %+v", cfg)
	}
}

func TestDefaultHotPath(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"xdg", map[string]string{"XDG_DATA_HOME": "/xdg", "HOME": "/home/u"}, "/xdg/scribefs/hot.db"},
		{"home", map[string]string{"HOME": "/home/u"}, "/home/u/.local/share/scribefs/hot.db"},
		{"relative xdg ignored", map[string]string{"XDG_DATA_HOME": "rel", "HOME": "/home/u"}, "/home/u/.local/share/scribefs/hot.db"},
		{"nothing", map[string]string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hot := defaults(envOf(tt.env)).Storage.Hot
			if hot.Path != tt.want {
				t.Errorf("path = %q, want %q", hot.Path, tt.want)
			}
			if tt.want != "" && hot.Spool() != filepath.Join(filepath.Dir(tt.want), "spool") {
				t.Errorf("Spool() = %q, want a spool directory beside %q", hot.Spool(), tt.want)
			}
		})
	}
}

func TestNoHomeIsAnError(t *testing.T) {
	_, err := load("", envOf(nil), filepath.Join(t.TempDir(), "none.toml"))
	mustOneLineHolding(t, err, "config embedded default: storage.hot.path: must be set to an absolute path", "XDG_DATA_HOME", "HOME")
}

func TestLoadFull(t *testing.T) {
	cfg := mustLoad(t, mustConfigFile(t, fullConfig), nil)
	want := Storage{
		MaxSegmentBytes: 5 << 40,
		Hot:             Hot{Path: "/var/lib/scribefs/hot.db", MaxBytes: 10 << 30},
		S3: &S3{
			Bucket: "my-scribe-bucket", Region: "us-east-1", Endpoint: "http://localhost:9000",
			AccessKeyID: "minioadmin", SecretAccessKey: "minioadmin", PathStyle: true,
			PoolSize: 10, Timeout: 30 * time.Second, MaxRetries: 3,
			Prefix: "segments/", Refresh: time.Minute,
		},
	}
	if !reflect.DeepEqual(cfg.Storage, want) {
		t.Errorf("Storage = %+v\nwant %+v", cfg.Storage, want)
	}
	if cfg.Cache.MaxBytes != 256<<20 || cfg.Tiering != (Tiering{time.Hour, 5 * time.Minute, "none", false}) {
		t.Errorf("Cache %+v, Tiering %+v", cfg.Cache, cfg.Tiering)
	}
	if got := cfg.Storage.Hot.Spool(); got != "/var/lib/scribefs/spool" {
		t.Errorf("Spool() = %q", got)
	}
}

func TestUpstreamExamplesLoadUnchanged(t *testing.T) {
	tests := []struct {
		file string
		want S3
	}{
		{"config-file.toml", S3{
			Bucket: "my-scribe-bucket", Region: "us-east-1", Endpoint: "http://localhost:9000",
			AccessKeyID: "minioadmin", SecretAccessKey: "minioadmin", PathStyle: true,
			PoolSize: 10, Timeout: 30 * time.Second, MaxRetries: 3, Prefix: "segments/", Refresh: time.Minute,
		}},
		{"minio.toml", S3{
			Bucket: "test-bucket", Region: "us-east-1", Endpoint: "http://localhost:9000",
			AccessKeyID: "minioadmin", SecretAccessKey: "minioadmin", PathStyle: true,
			PoolSize: 10, Timeout: 30 * time.Second, MaxRetries: 3, Prefix: "segments/", Refresh: time.Minute,
		}},
		{"aws.toml", S3{
			Bucket: "production-scribe-bucket", Region: "us-west-2",
			PoolSize: 10, Timeout: 30 * time.Second, MaxRetries: 3, Prefix: "segments/", Refresh: time.Minute,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			env := homeEnv(t)
			cfg := mustLoad(t, filepath.Join("testdata", "upstream", tt.file), env)
			if cfg.Storage.S3 == nil || *cfg.Storage.S3 != tt.want {
				t.Errorf("S3 = %#v\nwant %#v", cfg.Storage.S3, tt.want)
			}
			if want := filepath.Join(env["HOME"], ".local/share/scribefs/hot.db"); cfg.Storage.Hot.Path != want {
				t.Errorf("hot path = %q, want default %q", cfg.Storage.Hot.Path, want)
			}
		})
	}
}

func TestLoadRejects(t *testing.T) {
	const s3 = "[storage.s3]\nbucket = \"b\"\n"
	tests := []struct {
		name      string
		content   string
		key       string // the Key of the *Error
		fragments []string
	}{
		{"unknown key", s3 + "buckett = \"x\"\n", "", []string{`unknown key "storage.s3.buckett"`}},
		{"unknown table reported once", "[fooo]\na = 1\nb = 2\n", "", []string{`unknown key "fooo"`}},
		{"several unknown keys", "[cache]\nmax = 1\n[tiering]\nevery = 2\n", "", []string{`unknown keys "cache.max", "tiering.every"`}},
		{"keys are case-sensitive", "[storage.s3]\nBucket = \"b\"\n", "", []string{`unknown key "storage.s3.Bucket"`}},
		{"table case", "[Cache]\nmax_bytes = 1\n", "", []string{`unknown key "Cache"`}},
		{"integer as string", s3 + "pool_size = \"10\"\n", "storage.s3.pool_size", []string{"must be an integer, got a string"}},
		{"integer as float", s3 + "timeout_secs = 1.5\n", "storage.s3.timeout_secs", []string{"must be an integer, got a float"}},
		{"boolean as string", s3 + "path_style = \"yes\"\n", "storage.s3.path_style", []string{"must be a boolean, got a string"}},
		{"string as integer", "[storage.hot]\npath = 5\n", "storage.hot.path", []string{"must be a string, got an integer"}},
		{"string as array", s3 + "region = [\"a\"]\n", "storage.s3.region", []string{"must be a string, got an array"}},
		{"size as float", "[cache]\nmax_bytes = 1.5\n", "cache.max_bytes", []string{"must be an integer or a size string"}},
		{"size as table", "[cache]\nmax_bytes = {a = 1}\n", "cache.max_bytes", []string{"got a table"}},
		{"bad size unit", "[cache]\nmax_bytes = \"12XB\"\n", "cache.max_bytes", []string{`invalid size "12XB": unknown unit "XB"`}},
		{"table as integer", "storage = 5\n", "storage", []string{"must be a table, got an integer"}},
		{"array of tables", "[[storage.hot]]\npath = \"/x\"\n", "storage.hot", []string{"must be a table, got an array of tables"}},
		{"s3 as string", "[storage]\ns3 = \"b\"\n", "storage.s3", []string{"must be a table, got a string"}},
		{"negative size", "[storage.hot]\nmax_bytes = -1\n", "storage.hot.max_bytes", []string{"must be at least 0, got -1"}},
		{"negative size string", "[storage.hot]\nmax_bytes = \"-1GiB\"\n", "storage.hot.max_bytes", []string{"must not be negative"}},
		{"negative cache", "[cache]\nmax_bytes = -4096\n", "cache.max_bytes", []string{"must be at least 0, got -4096"}},
		{"zero segment size", "[storage]\nmax_segment_bytes = 0\n", "storage.max_segment_bytes", []string{"must be at least 1, got 0"}},
		{"negative archive_after", "[tiering]\narchive_after_secs = -5\n", "tiering.archive_after_secs", []string{"must be at least 0, got -5"}},
		{"zero check interval", "[tiering]\ncheck_interval_secs = 0\n", "tiering.check_interval_secs", []string{"must be at least 1, got 0"}},
		{"negative timeout", s3 + "timeout_secs = -1\n", "storage.s3.timeout_secs", []string{"must be at least 1, got -1"}},
		{"negative refresh", s3 + "refresh_secs = -60\n", "storage.s3.refresh_secs", []string{"must be at least 1, got -60"}},
		{"duration overflow", s3 + "timeout_secs = 9223372036854775807\n", "storage.s3.timeout_secs", []string{"out of range"}},
		{"pool_size zero", s3 + "pool_size = 0\n", "storage.s3.pool_size", []string{"storage.s3.pool_size: must be at least 1, got 0"}},
		{"negative retries", s3 + "max_retries = -1\n", "storage.s3.max_retries", []string{"must be at least 0, got -1"}},
		{"empty bucket", "[storage.s3]\nbucket = \"\"\n", "storage.s3.bucket", []string{"must name a bucket"}},
		{"no bucket", "[storage.s3]\nregion = \"us-east-1\"\n", "storage.s3.bucket", []string{"must name a bucket"}},
		{"empty section", "[storage.s3]\n", "storage.s3.bucket", []string{"must name a bucket"}},
		{"endpoint without scheme", s3 + "endpoint = \"localhost:9000\"\n", "storage.s3.endpoint", []string{"must be an http:// or https:// URL"}},
		{"bad compression", "[tiering]\ncompression = \"lz4\"\n", "tiering.compression", []string{`must be "none", "gzip" or "zstd", got "lz4"`}},
		{"verify_merkle not a boolean", "[tiering]\nverify_merkle = \"yes\"\n", "tiering.verify_merkle", []string{"must be a boolean, got a string"}},
		{"compression is case-sensitive", "[tiering]\ncompression = \"GZIP\"\n", "tiering.compression", []string{`got "GZIP"`}},
		{"relative hot path", "[storage.hot]\npath = \"data/hot.db\"\n", "storage.hot.path", []string{`must be an absolute path, got "data/hot.db"`}},
		{"tilde hot path", "[storage.hot]\npath = \"~/hot.db\"\n", "storage.hot.path", []string{"~ is not expanded"}},
		{"empty hot path", "[storage.hot]\npath = \"\"\n", "storage.hot.path", []string{"must be set to an absolute path"}},
		{"relative spool dir", "[storage.hot]\nspool_dir = \"spool\"\n", "storage.hot.spool_dir", []string{`must be an absolute path, got "spool"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := mustConfigFile(t, tt.content)
			ce := mustFail(t, path, homeEnv(t), append(tt.fragments, "config "+path+": "+tt.key)...)
			if ce.File != path || ce.Key != tt.key || ce.Line != 0 {
				t.Errorf("Error{File: %q, Key: %q, Line: %d}, want file %q, key %q", ce.File, ce.Key, ce.Line, path, tt.key)
			}
		})
	}
}

func TestSyntaxErrorNamesLine(t *testing.T) {
	tests := []struct {
		content string
		line    int
	}{
		{"[storage.hot]\npath = /x\n", 2},
		{"[cache]\nmax_bytes = 1\nmax_bytes = 2\n", 3},
		{"[tiering]\n\ncompression = \"none\n", 3},
		{"[cache]\nmax_bytes = \n", 2},
	}
	for _, tt := range tests {
		path := mustConfigFile(t, tt.content)
		ce := mustFail(t, path, homeEnv(t), fmt.Sprintf("config %s: line %d: ", path, tt.line))
		if ce.Line != tt.line {
			t.Errorf("%q: Line = %d, want %d", tt.content, ce.Line, tt.line)
		}
	}
}

func TestHumanSizes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"4096", 4096},
		{"0", 0},
		{"512k", 512 << 10},
		{"512K", 512 << 10},
		{"512KiB", 512 << 10},
		{"512kib", 512 << 10},
		{"2KB", 2000},
		{"256MiB", 256 << 20},
		{"256M", 256 << 20},
		{"1MB", 1e6},
		{"10GiB", 10 << 30},
		{"10g", 10 << 30},
		{"1.5GB", 1.5e9},
		{"1.5GiB", 3 << 29},
		{"5TiB", 5 << 40},
		{"5T", 5 << 40},
		{"2TB", 2e12},
		{"100B", 100},
		{" 10 GiB ", 10 << 30},
		{"8388607TiB", 8388607 << 40},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	bad := []struct{ in, fragment string }{
		{"", "empty"},
		{"GiB", "want a number"},
		{"-1", "must not be negative"},
		{"+1", "want a number"},
		{"1.", "digits after the decimal point"},
		{"1.5", "not a whole number of bytes"},
		{"0.3KiB", "not a whole number of bytes"},
		{"10 XB", `unknown unit "XB"`},
		{"10 GiBs", `unknown unit "GiBs"`},
		{"1e9", `unknown unit "e9"`},
		{"8388608TiB", "too large"},
		{"9223372036854775808", "too large"},
		{strings.Repeat("9", 100), "too long"},
	}
	for _, tt := range bad {
		_, err := ParseSize(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.fragment) {
			t.Errorf("ParseSize(%q) error = %v, want one containing %q", tt.in, err, tt.fragment)
		}
	}
}

func TestHumanSizesInFile(t *testing.T) {
	cfg := mustLoad(t, mustConfigFile(t, `
[storage]
max_segment_bytes = "1TiB"
[storage.hot]
max_bytes = "1.5GB"
[cache]
max_bytes = 4096
`), homeEnv(t))
	if cfg.Storage.MaxSegmentBytes != 1<<40 || cfg.Storage.Hot.MaxBytes != 1.5e9 || cfg.Cache.MaxBytes != 4096 {
		t.Errorf("sizes: segment %d, hot %d, cache %d", cfg.Storage.MaxSegmentBytes, cfg.Storage.Hot.MaxBytes, cfg.Cache.MaxBytes)
	}
}

func TestSizeText(t *testing.T) {
	for _, n := range []int64{0, 1, 1000, 1024, 4097, 1.5e9, 3 << 29, 256 << 20, 5 << 40, 1e12} {
		text, _ := Size(n).MarshalText()
		var s Size
		if err := s.UnmarshalText(text); err != nil || int64(s) != n {
			t.Errorf("Size(%d) -> %q -> %d, %v", n, text, s, err)
		}
	}
	if got := Size(256 << 20).String(); got != "256MiB" {
		t.Errorf("String() = %q, want 256MiB", got)
	}
}

func TestEnvOverrides(t *testing.T) {
	withS3 := "[storage.s3]\nbucket = \"file-bucket\"\nregion = \"eu-west-1\"\npath_style = true\n"
	tests := []struct {
		name    string
		content string // "" means no file
		env     map[string]string
		want    *S3
	}{
		{"bucket alone turns the cold tier on", "", map[string]string{"S3_BUCKET": "env-bucket"},
			&S3{Bucket: "env-bucket", PoolSize: 10, Timeout: 30 * time.Second, MaxRetries: 3, Prefix: "segments/", Refresh: time.Minute}},
		{"no variables keep the file", withS3, nil,
			&S3{Bucket: "file-bucket", Region: "eu-west-1", PathStyle: true, PoolSize: 10, Timeout: 30 * time.Second, MaxRetries: 3, Prefix: "segments/", Refresh: time.Minute}},
		{"every variable", withS3, map[string]string{
			"S3_BUCKET": "env-bucket", "S3_REGION": "us-east-2", "S3_ENDPOINT": "https://minio.example:9000",
			"S3_ACCESS_KEY_ID": "AKIA", "S3_SECRET_ACCESS_KEY": "shh", "S3_PATH_STYLE": "false",
		}, &S3{Bucket: "env-bucket", Region: "us-east-2", Endpoint: "https://minio.example:9000", AccessKeyID: "AKIA",
			SecretAccessKey: "shh", PoolSize: 10, Timeout: 30 * time.Second, MaxRetries: 3, Prefix: "segments/", Refresh: time.Minute}},
		{"empty variable is unset", withS3, map[string]string{"S3_BUCKET": "", "S3_REGION": ""},
			&S3{Bucket: "file-bucket", Region: "eu-west-1", PathStyle: true, PoolSize: 10, Timeout: 30 * time.Second, MaxRetries: 3, Prefix: "segments/", Refresh: time.Minute}},
		{"path style 0", withS3, map[string]string{"S3_PATH_STYLE": "0"},
			&S3{Bucket: "file-bucket", Region: "eu-west-1", PoolSize: 10, Timeout: 30 * time.Second, MaxRetries: 3, Prefix: "segments/", Refresh: time.Minute}},
		{"path style 1", "", map[string]string{"S3_BUCKET": "b", "S3_PATH_STYLE": "1"},
			&S3{Bucket: "b", PathStyle: true, PoolSize: 10, Timeout: 30 * time.Second, MaxRetries: 3, Prefix: "segments/", Refresh: time.Minute}},
		{"path style TRUE", "", map[string]string{"S3_BUCKET": "b", "S3_PATH_STYLE": "TRUE"},
			&S3{Bucket: "b", PathStyle: true, PoolSize: 10, Timeout: 30 * time.Second, MaxRetries: 3, Prefix: "segments/", Refresh: time.Minute}},
		{"other variables need a cold tier", "", map[string]string{"S3_REGION": "us-east-1", "S3_PATH_STYLE": "true"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := homeEnv(t)
			for k, v := range tt.env {
				env[k] = v
			}
			path := ""
			if tt.content != "" {
				path = mustConfigFile(t, tt.content)
			}
			cfg, err := load(path, envOf(env), filepath.Join(t.TempDir(), "absent.toml"))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Storage.S3, tt.want) {
				t.Errorf("S3 = %#v\nwant %#v", cfg.Storage.S3, tt.want)
			}
		})
	}
}

func TestEnvWithoutColdTierWarns(t *testing.T) {
	env := homeEnv(t)
	env["S3_REGION"] = "us-east-1"
	cfg, err := load("", envOf(env), filepath.Join(t.TempDir(), "absent.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if w := cfg.Warnings(); len(w) != 1 || !strings.Contains(w[0], "S3_REGION is set but ignored") {
		t.Errorf("Warnings() = %q, want one about S3_REGION", w)
	}
}

func TestBadPathStyleVariable(t *testing.T) {
	env := homeEnv(t)
	env["S3_BUCKET"] = "b"
	env["S3_PATH_STYLE"] = "yes"
	ce := mustFail(t, "", env, "environment variable S3_PATH_STYLE: ", `got "yes"`)
	if ce.Key != "S3_PATH_STYLE" || ce.File != "" {
		t.Errorf("Error{File: %q, Key: %q}", ce.File, ce.Key)
	}
}

func TestResolutionOrder(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	xdg := filepath.Join(dir, "xdg")
	file := func(p string) string { return mustWrite(t, p, "[cache]\nmax_bytes = 1\n", 0o600) }
	flag := file(filepath.Join(dir, "flag.toml"))
	named := file(filepath.Join(dir, "named.toml"))
	xdgFile := file(filepath.Join(xdg, "scribefs", "config.toml"))
	homeFile := file(filepath.Join(home, ".config", "scribefs", "config.toml"))
	system := file(filepath.Join(dir, "etc", "config.toml"))
	emptyHome := filepath.Join(dir, "empty-home")

	tests := []struct {
		name   string
		flag   string
		env    map[string]string
		system string
		want   string
	}{
		{"flag first", flag, map[string]string{"SCRIBEFS_CONFIG": named, "XDG_CONFIG_HOME": xdg, "HOME": home}, system, flag},
		{"flag even when SCRIBEFS_CONFIG is missing", flag, map[string]string{"SCRIBEFS_CONFIG": filepath.Join(dir, "missing"), "HOME": home}, system, flag},
		{"then SCRIBEFS_CONFIG", "", map[string]string{"SCRIBEFS_CONFIG": named, "XDG_CONFIG_HOME": xdg, "HOME": home}, system, named},
		{"then XDG_CONFIG_HOME", "", map[string]string{"XDG_CONFIG_HOME": xdg, "HOME": home}, system, xdgFile},
		{"then ~/.config", "", map[string]string{"HOME": home}, system, homeFile},
		{"relative XDG_CONFIG_HOME ignored", "", map[string]string{"XDG_CONFIG_HOME": "xdg", "HOME": home}, system, homeFile},
		{"XDG_CONFIG_HOME without a file falls to /etc", "", map[string]string{"XDG_CONFIG_HOME": filepath.Join(dir, "nothing"), "HOME": home}, system, system},
		{"then /etc", "", map[string]string{"HOME": emptyHome}, system, system},
		{"then the embedded default", "", map[string]string{"HOME": emptyHome}, filepath.Join(dir, "absent.toml"), DefaultSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(tt.flag, envOf(tt.env), tt.system)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Source != tt.want {
				t.Errorf("Source = %q, want %q", cfg.Source, tt.want)
			}
			if fromFile := cfg.Cache.MaxBytes == 1; fromFile != (tt.want != DefaultSource) {
				t.Errorf("cache.max_bytes = %d: file applied = %v, want %v", cfg.Cache.MaxBytes, fromFile, !fromFile)
			}
		})
	}
}

func TestMissingNamedFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.toml")
	tests := []struct {
		name string
		flag string
		env  map[string]string
		by   string
	}{
		{"flag", missing, map[string]string{"HOME": "/nonexistent"}, "--config"},
		{"variable", "", map[string]string{"HOME": "/nonexistent", "SCRIBEFS_CONFIG": missing}, "SCRIBEFS_CONFIG"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.flag, envOf(tt.env))
			mustOneLineHolding(t, err, "config "+missing+": ", "no such file", tt.by)
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
			}
		})
	}
}

func TestUnreadableDefaultFileIsAnError(t *testing.T) {
	home := t.TempDir()
	// A directory where the file should be: present but unreadable as a file,
	// which must not silently fall through to /etc or the defaults.
	if err := os.MkdirAll(filepath.Join(home, ".config", "scribefs", "config.toml"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := load("", envOf(map[string]string{"HOME": home}), filepath.Join(t.TempDir(), "absent.toml"))
	mustOneLineHolding(t, err, "config "+filepath.Join(home, ".config", "scribefs", "config.toml")+": ")
}

func TestSecretNeverLeaks(t *testing.T) {
	const secret = "ZqXj-very-secret-42"
	leakCheck := func(t *testing.T, what, s string) {
		t.Helper()
		if strings.Contains(s, "ZqX") {
			t.Errorf("%s leaks the secret: %s", what, s)
		}
	}
	t.Run("errors", func(t *testing.T) {
		files := []string{
			"[storage.s3]\nbucket = \"b\"\nsecret_access_key = " + secret + "\n",                    // bare: the parser quotes it
			"[storage.s3]\nbucket = \"b\"\nsecret_access_key = \"" + secret + "\n",                  // unterminated
			"[storage.s3]\nbucket = \"b\"\nsecret_access_key = \"" + secret + "\" junk\n",           // trailing junk
			"[storage.s3]\nbucket = \"b\"\nsecret_access_key = \"\"\"" + secret + "\n",              // unterminated multi-line
			"[storage.s3]\nbucket = \"b\"\nsecret_access_key = [\"" + secret + "\"]\n",              // wrong type
			"[storage.s3]\nbucket = \"b\"\nsecret_access_key = {" + secret + " = 1}\n",              // wrong type, secret as a key
			"[storage.s3]\nbucket = \"b\"\nsecret_access_key = \"" + secret + "\"\npool_size = 0\n", // unrelated error
			"[storage.s3]\nsecret_access_key = \"" + secret + "\"\n",                                // no bucket
		}
		for _, content := range files {
			path := mustConfigFile(t, content)
			_, err := Load(path, envOf(homeEnv(t)))
			if err == nil {
				t.Errorf("Load(%q) succeeded", content)
				continue
			}
			leakCheck(t, "error", err.Error())
		}
		env := homeEnv(t)
		env["S3_BUCKET"], env["S3_SECRET_ACCESS_KEY"], env["S3_PATH_STYLE"] = "b", secret, "maybe"
		_, err := Load("", envOf(env))
		if err == nil {
			t.Fatal("bad S3_PATH_STYLE accepted")
		}
		leakCheck(t, "error", err.Error())
	})
	t.Run("formatting", func(t *testing.T) {
		path := mustWrite(t, filepath.Join(t.TempDir(), "c.toml"),
			"[storage.s3]\nbucket = \"b\"\ninsecure_skip_verify = true\nsecret_access_key = \""+secret+"\"\n", 0o644)
		cfg := mustLoad(t, path, homeEnv(t))
		if got := cfg.Storage.S3.SecretAccessKey.Reveal(); got != secret {
			t.Fatalf("Reveal() = %q, want the secret", got)
		}
		s3 := *cfg.Storage.S3
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X"} {
			for name, v := range map[string]any{"cfg": cfg, "*cfg": *cfg, "storage": cfg.Storage, "s3": s3, "&s3": &s3, "secret": s3.SecretAccessKey} {
				leakCheck(t, fmt.Sprintf("Sprintf(%q, %s)", verb, name), fmt.Sprintf(verb, v))
			}
		}
		j, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		leakCheck(t, "json", string(j))
		leakCheck(t, "Redacted", cfg.Redacted())
		leakCheck(t, "Warnings", strings.Join(cfg.Warnings(), "\n"))
		if !strings.Contains(cfg.Redacted(), `secret_access_key = "***"`) || !strings.Contains(s3.String(), `secret_access_key = "***"`) {
			t.Errorf("redacted forms do not show the mask:\n%s\n%s", cfg.Redacted(), s3.String())
		}
		if strings.Contains(s3.String(), "\n") {
			t.Errorf("S3.String() is not one line: %q", s3.String())
		}
	})
}

func TestEmptySecretPrintsEmpty(t *testing.T) {
	if got := fmt.Sprintf("%v|%q|%#v", Secret(""), Secret(""), Secret("")); got != `|""|""` {
		t.Errorf("empty Secret formats as %s", got)
	}
}

func TestPermissionWarning(t *testing.T) {
	const withSecret = "[storage.s3]\nbucket = \"b\"\nsecret_access_key = \"k\"\n"
	tests := []struct {
		name    string
		content string
		mode    fs.FileMode
		warn    bool
	}{
		{"world-readable secret", withSecret, 0o644, true},
		{"group-readable secret", withSecret, 0o640, true},
		{"private secret", withSecret, 0o600, false},
		{"world-readable without secret", "[storage.s3]\nbucket = \"b\"\n", 0o644, false},
		{"empty secret", "[storage.s3]\nbucket = \"b\"\nsecret_access_key = \"\"\n", 0o644, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := mustWrite(t, filepath.Join(t.TempDir(), "config.toml"), tt.content, tt.mode)
			cfg := mustLoad(t, path, homeEnv(t))
			want := []string(nil)
			if tt.warn {
				want = []string{fmt.Sprintf("config %s is readable by other users but holds secret_access_key; chmod 600 %s", path, path)}
			}
			if got := cfg.Warnings(); !reflect.DeepEqual(got, want) {
				t.Errorf("Warnings() = %q, want %q", got, want)
			}
		})
	}
}

func TestInsecureSkipVerifyWarns(t *testing.T) {
	cfg := mustLoad(t, mustConfigFile(t, "[storage.s3]\nbucket = \"b\"\ninsecure_skip_verify = true\n"), homeEnv(t))
	if w := cfg.Warnings(); len(w) != 1 || !strings.Contains(w[0], "insecure_skip_verify") {
		t.Errorf("Warnings() = %q, want one about insecure_skip_verify", w)
	}
	cfg.Storage.S3.InsecureSkipVerify = false // as a flag would
	if w := cfg.Warnings(); len(w) != 0 {
		t.Errorf("Warnings() after turning it off = %q", w)
	}
}

func TestValidateAfterFlags(t *testing.T) {
	path := mustConfigFile(t, "[storage.s3]\nbucket = \"b\"\n")
	cfg := mustLoad(t, path, homeEnv(t))
	cfg.Storage.S3.PoolSize = 0
	mustOneLineHolding(t, cfg.Validate(), "config "+path+": storage.s3.pool_size: must be at least 1, got 0")
	cfg.Storage.S3.PoolSize = 4
	cfg.Tiering.Compression = CompressionZstd
	cfg.Storage.Hot.Path = "/srv/hot.db"
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	if got := cfg.Storage.Hot.Spool(); got != "/srv/spool" {
		t.Errorf("Spool() after moving the hot path = %q, want /srv/spool", got)
	}
}

func TestRedactedLoadsBack(t *testing.T) {
	cfg := mustLoad(t, mustConfigFile(t, fullConfig+"\n"), nil)
	cfg.Storage.S3.SecretAccessKey = ""
	cfg.Storage.Hot.SpoolDir = "/var/spool/scribefs"
	back := mustLoad(t, mustConfigFile(t, cfg.Redacted()), nil)
	if !reflect.DeepEqual(back.Storage, cfg.Storage) || back.Cache != cfg.Cache || back.Tiering != cfg.Tiering {
		t.Errorf("Redacted did not load back:\n%s\ngot %+v", cfg.Redacted(), back)
	}
}

func TestDottedKeysAndInlineTables(t *testing.T) {
	cfg := mustLoad(t, mustConfigFile(t, `
storage.hot.path = "/srv/hot.db"
storage.s3 = { bucket = "b", pool_size = 2 }
cache = { max_bytes = "1MiB" }
`), nil)
	if cfg.Storage.Hot.Path != "/srv/hot.db" || cfg.Storage.S3 == nil || cfg.Storage.S3.Bucket != "b" ||
		cfg.Storage.S3.PoolSize != 2 || cfg.Cache.MaxBytes != 1<<20 {
		t.Errorf("got %+v", cfg)
	}
}

// TestLoadRefusesHostileShapes: files made to exhaust the TOML parser are
// refused before parsing, in one line naming the file and line, with
// little memory; legal shapes still parse as before.
func TestLoadRefusesHostileShapes(t *testing.T) {
	env := envOf(map[string]string{"HOME": "/home/x"})
	for _, tc := range []struct {
		name, text, want string
	}{
		{"dotted key of 4000 parts", strings.Repeat("a.", 3999) + "a = 1\n", "line 1: a key of more than 8 parts"},
		{"header of 20 parts", "[" + strings.Repeat("a.", 19) + "a]\nb = 1\n", "line 1: a key of more than 8 parts"},
		{"deep key under a header", "# c\n[storage.s3]\n" + strings.Repeat("a.", 10) + "a = 1\n", "line 3: a key of more than 8 parts"},
		{"5000 nested inline tables", "a = " + strings.Repeat("{b=", 5000) + "1" + strings.Repeat("}", 5000) + "\n", "line 1: values nested more than 8 deep"},
		{"keys of inline tables", "a = {b = 1, " + strings.Repeat("c.", 100) + "d = 2}\n", "a key of more than 8 parts"},
		{"5000 nested arrays", "a = " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "\n", "values nested more than 8 deep"},
		{"a 100 KB file", "# " + strings.Repeat("x", 100<<10) + "\n", "larger than 65536 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			_, err := Load(path, env)
			runtime.ReadMemStats(&m1)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("got %v, want an error naming %s and %q", err, path, tc.want)
			}
			if len(err.Error()) > 300 || strings.Contains(err.Error(), "\n") {
				t.Fatalf("not one short line: %q", err)
			}
			if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 4<<20 {
				t.Fatalf("refusing it allocated %d MiB", alloc>>20)
			}
		})
	}
	// Strings, comments and numbers with dots and brackets are not keys.
	ok := "# a.b.c.d.e.f.g.h.i.j [[[[[[[[[[\n[storage.s3]\nbucket = \"a.b.c.d.e.f.g.h.i.j[[[[[[[[[{{{{{{\"\n" +
		"prefix = '''x.y.z.\n[[[[[[[[[[[ ''' # {{{{{{{{{{\nendpoint = \"\"\"http://a.b\"\"\"\n[tiering]\narchive_after_secs = 1_000\n"
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(ok), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, env)
	if err != nil {
		t.Fatalf("a legal file was refused: %v", err)
	}
	if cfg.Storage.S3 == nil || cfg.Storage.S3.Bucket != "a.b.c.d.e.f.g.h.i.j[[[[[[[[[{{{{{{" {
		t.Fatalf("parsed: %+v", cfg.Storage.S3)
	}
}

func TestAssumeSoleWriter(t *testing.T) {
	cfg := mustLoad(t, mustConfigFile(t, "[storage.s3]\nbucket = \"b\"\n"), homeEnv(t))
	if cfg.Storage.S3.AssumeSoleWriter {
		t.Fatal("assume_sole_writer on by default")
	}
	cfg = mustLoad(t, mustConfigFile(t, "[storage.s3]\nbucket = \"b\"\nassume_sole_writer = true\n"), homeEnv(t))
	if !cfg.Storage.S3.AssumeSoleWriter {
		t.Fatal("assume_sole_writer = true not read")
	}
	_, err := Load(mustConfigFile(t, "[storage.s3]\nbucket = \"b\"\nassume_sole_writer = \"yes\"\n"), envOf(homeEnv(t)))
	if err == nil || !strings.Contains(err.Error(), "storage.s3.assume_sole_writer") {
		t.Fatalf("wrong type: %v", err)
	}
}

func TestVerifyMerkle(t *testing.T) {
	cfg := mustLoad(t, mustConfigFile(t, "[storage.hot]\npath = \"/x/hot.db\"\n[tiering]\nverify_merkle = true\n"), nil)
	if !cfg.Tiering.VerifyMerkle {
		t.Fatalf("verify_merkle = true: %+v", cfg.Tiering)
	}
	if Default().Tiering.VerifyMerkle {
		t.Fatal("verify_merkle defaults to true")
	}
}
