package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// systemConfigPath is the last place Load looks for a file.
const systemConfigPath = "/etc/scribefs/config.toml"

// maxFileBytes bounds what Load reads: a config file is a few hundred bytes,
// and anything this large is the wrong file (or one made to exhaust the
// parser; see checkShape).
const maxFileBytes = 64 << 10

// Error is the error Load and Validate return for a configuration that
// cannot be used. Its message is one line and never holds the secret key.
type Error struct {
	// File is the configuration file (or DefaultSource); "" when the
	// problem is in an environment variable.
	File string
	// Line is the line of a TOML syntax error, 0 otherwise.
	Line int
	// Key is the dotted TOML key ("storage.s3.pool_size") or, when File is
	// "", the environment variable; "" when the error is about the whole file.
	Key string
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File == "" {
		b.WriteString("environment variable " + e.Key)
	} else {
		b.WriteString("config " + e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ": line %d", e.Line)
		}
		if e.Key != "" {
			b.WriteString(": " + e.Key)
		}
	}
	b.WriteString(": " + e.Err.Error())
	// Messages may quote the user's input; keep the promise of one line.
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(b.String())
}

func (e *Error) Unwrap() error { return e.Err }

// Load finds the configuration file, applies it and the S3_* environment
// variables over the defaults, and validates the result. explicitPath is the
// --config flag ("" when not given); env looks up environment variables
// (os.Getenv when nil). The package comment gives the search order. Errors
// are *Error.
func Load(explicitPath string, env func(string) string) (*Config, error) {
	return load(explicitPath, env, systemConfigPath)
}

func load(explicitPath string, env func(string) string, systemPath string) (*Config, error) {
	if env == nil {
		env = os.Getenv
	}
	cfg := defaults(env)
	if err := readFirst(cfg, candidates(explicitPath, env, systemPath)); err != nil {
		return nil, err
	}
	if err := applyEnv(cfg, env); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// candidate is a place the file may be. namedBy is the flag or variable
// that named it; a named file must exist, the default places may not.
type candidate struct{ path, namedBy string }

func candidates(explicitPath string, env func(string) string, systemPath string) []candidate {
	if explicitPath != "" {
		return []candidate{{explicitPath, "--config"}}
	}
	if p := env("SCRIBEFS_CONFIG"); p != "" {
		return []candidate{{p, "SCRIBEFS_CONFIG"}}
	}
	var c []candidate
	if dir := xdgDir(env, "XDG_CONFIG_HOME", ".config"); dir != "" {
		c = append(c, candidate{filepath.Join(dir, "scribefs", "config.toml"), ""})
	}
	return append(c, candidate{systemPath, ""})
}

// readFirst applies the first candidate that exists to cfg. When none does,
// cfg keeps its defaults.
func readFirst(cfg *Config, cands []candidate) error {
	for _, c := range cands {
		data, mode, err := readFile(c.path)
		if errors.Is(err, fs.ErrNotExist) && c.namedBy == "" {
			continue
		}
		if err != nil {
			if c.namedBy != "" {
				err = fmt.Errorf("%w (named by %s)", err, c.namedBy)
			}
			return &Error{File: c.path, Err: err}
		}
		cfg.Source = c.path
		holdsSecret, err := decode(cfg, c.path, data)
		if err != nil {
			return err
		}
		if holdsSecret && mode&0o044 != 0 {
			cfg.loadWarnings = append(cfg.loadWarnings, fmt.Sprintf(
				"config %s is readable by other users but holds secret_access_key; chmod 600 %s", c.path, c.path))
		}
		return nil
	}
	return nil
}

// readFile returns the file's contents and permissions, taken from the same
// open file so they describe the same thing. Errors carry no path: Error
// adds it.
func readFile(path string) ([]byte, fs.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, stripPath(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, 0, stripPath(err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, 0, stripPath(err)
	}
	if len(data) > maxFileBytes {
		return nil, 0, fmt.Errorf("larger than %d bytes; not a configuration file", maxFileBytes)
	}
	return data, info.Mode().Perm(), nil
}

func stripPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// file mirrors the TOML schema. Every key is a setting, which never fails
// decoding: a mistyped value is recorded and reported by apply, with its
// key, in schema order. So the only errors toml.Decode returns are syntax
// errors and a table given as something else.
type file struct {
	Storage struct {
		MaxSegmentBytes setting[Size] `toml:"max_segment_bytes"`
		Hot             struct {
			Path     setting[string] `toml:"path"`
			MaxBytes setting[Size]   `toml:"max_bytes"`
			SpoolDir setting[string] `toml:"spool_dir"`
		} `toml:"hot"`
		S3 *s3File `toml:"s3"`
	} `toml:"storage"`
	Cache struct {
		MaxBytes         setting[Size]  `toml:"max_bytes"`
		PrefetchSegments setting[int64] `toml:"prefetch_segments"`
	} `toml:"cache"`
	Tiering struct {
		ArchiveAfterSecs  setting[int64]  `toml:"archive_after_secs"`
		CheckIntervalSecs setting[int64]  `toml:"check_interval_secs"`
		Compression       setting[string] `toml:"compression"`
		VerifyMerkle      setting[bool]   `toml:"verify_merkle"`
	} `toml:"tiering"`
}

type s3File struct {
	Bucket             setting[string] `toml:"bucket"`
	Region             setting[string] `toml:"region"`
	Endpoint           setting[string] `toml:"endpoint"`
	AccessKeyID        setting[string] `toml:"access_key_id"`
	SecretAccessKey    setting[string] `toml:"secret_access_key"`
	PathStyle          setting[bool]   `toml:"path_style"`
	PoolSize           setting[int64]  `toml:"pool_size"`
	TimeoutSecs        setting[int64]  `toml:"timeout_secs"`
	MaxRetries         setting[int64]  `toml:"max_retries"`
	Prefix             setting[string] `toml:"prefix"`
	RefreshSecs        setting[int64]  `toml:"refresh_secs"`
	InsecureSkipVerify setting[bool]   `toml:"insecure_skip_verify"`
	AssumeSoleWriter   setting[bool]   `toml:"assume_sole_writer"`
}

// tables are the keys that must hold tables; see decodeError.
var tables = []toml.Key{{"storage"}, {"storage", "hot"}, {"storage", "s3"}, {"cache"}, {"tiering"}}

// decode applies the file's settings to cfg and reports whether the file
// holds a secret key.
func decode(cfg *Config, path string, data []byte) (holdsSecret bool, err error) {
	if err := checkShape(data); err != nil {
		var se *shapeError
		if errors.As(err, &se) {
			return false, &Error{File: path, Line: se.line, Err: err}
		}
		return false, &Error{File: path, Err: err}
	}
	var f file
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return false, decodeError(path, data, md, err)
	}
	// Values first: a value of the wrong type may be a table whose keys
	// (say, a secret written as a key) are no business of unknownKeys.
	if err := f.apply(cfg); err != nil {
		err.File = path
		return false, err
	}
	if err := unknownKeys(md); err != nil {
		return false, &Error{File: path, Err: err}
	}
	s3 := f.Storage.S3
	return s3 != nil && s3.SecretAccessKey.val != "", nil
}

func decodeError(path string, data []byte, md toml.MetaData, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: path, Line: pe.Position.Line, Err: errors.New(withholdSecret(pe, string(data)))}
	}
	for _, k := range tables {
		if t := md.Type(k...); t != "" && t != "Hash" {
			return &Error{File: path, Key: k.String(), Err: fmt.Errorf("must be a table, got %s", metaTypeName(t))}
		}
	}
	// Not expected; the decoder's own words, which never quote values.
	return &Error{File: path, Err: errors.New(strings.TrimPrefix(err.Error(), "toml: "))}
}

// withholdSecret returns a syntax error's message, unless the error is
// about secret_access_key or on its line: the parser quotes the offending
// text, which may be the start of the secret.
func withholdSecret(pe toml.ParseError, text string) string {
	line := ""
	if lines := strings.Split(text, "\n"); pe.Position.Line >= 1 && pe.Position.Line <= len(lines) {
		line = lines[pe.Position.Line-1]
	}
	if strings.Contains(pe.LastKey, "secret_access_key") || strings.Contains(line, "secret_access_key") {
		return "invalid TOML near secret_access_key (details withheld: they may quote the secret)"
	}
	return pe.Message
}

func metaTypeName(t string) string {
	names := map[string]string{
		"Integer": "an integer", "Float": "a float", "Datetime": "a date-time",
		"String": "a string", "Bool": "a boolean", "Array": "an array",
		"ArrayHash": "an array of tables",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return t
}

// unknownKeys rejects keys the schema lacks. Undecoded finds most; keys with
// characters outside [a-z0-9_] are caught too, because the decoder matches
// field names case-insensitively ("Bucket" would otherwise pass as
// "bucket"), and every schema key is lower-case.
func unknownKeys(md toml.MetaData) error {
	undecoded := make(map[string]bool)
	for _, k := range md.Undecoded() {
		undecoded[k.String()] = true
	}
	var unknown []string
	for _, k := range md.Keys() {
		name := k.String()
		if !undecoded[name] && isSchemaKey(k) {
			continue
		}
		if within(name, unknown) {
			continue // a key inside an unknown table adds nothing
		}
		unknown = append(unknown, name)
	}
	switch len(unknown) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("unknown key %q", unknown[0])
	}
	quoted := make([]string, len(unknown))
	for i, k := range unknown {
		quoted[i] = strconv.Quote(k)
	}
	return fmt.Errorf("unknown keys %s", strings.Join(quoted, ", "))
}

func isSchemaKey(k toml.Key) bool {
	for _, part := range k {
		for _, r := range part {
			if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '_') {
				return false
			}
		}
	}
	return true
}

func within(key string, parents []string) bool {
	for _, p := range parents {
		if strings.HasPrefix(key, p+".") {
			return true
		}
	}
	return false
}

// setting is one key of the file: its value, whether the file gave it, and
// what was wrong with it.
type setting[T any] struct {
	val T
	set bool
	err error
}

// UnmarshalTOML records the value, or the type mismatch, and never fails;
// see file.
func (s *setting[T]) UnmarshalTOML(data any) error {
	s.set = true
	if u, ok := any(&s.val).(toml.Unmarshaler); ok {
		s.err = u.UnmarshalTOML(data)
		return nil
	}
	v, ok := data.(T)
	if !ok {
		s.err = fmt.Errorf("must be %s, got %s", tomlTypeName(s.val), tomlTypeName(data))
		return nil
	}
	s.val = v
	return nil
}

// tomlTypeName names the TOML type of a decoded value, with its article.
func tomlTypeName(v any) string {
	switch v.(type) {
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// into stores s's value, converted, in dst when the file gave one.
func into[T, D any](s setting[T], dst *D, convert func(T) (D, error)) error {
	if !s.set {
		return nil
	}
	if s.err != nil {
		return s.err
	}
	v, err := convert(s.val)
	if err != nil {
		return err
	}
	*dst = v
	return nil
}

func same[T any](v T) (T, error)        { return v, nil }
func sizeBytes(v Size) (int64, error)   { return int64(v), nil }
func secretOf(v string) (Secret, error) { return Secret(v), nil }

func count(v int64) (int, error) {
	if int64(int(v)) != v {
		return 0, fmt.Errorf("out of range, got %d", v)
	}
	return int(v), nil
}

// seconds converts a *_secs value. Range (negative, zero) is Validate's
// business; only what time.Duration cannot hold is refused here.
func seconds(v int64) (time.Duration, error) {
	const limit = int64(1<<63-1) / int64(time.Second)
	if v > limit || v < -limit {
		return 0, fmt.Errorf("out of range, got %d", v)
	}
	return time.Duration(v) * time.Second, nil
}

// apply copies every key the file gave into cfg. It reports the first bad
// one in schema order, so the same file always yields the same error.
func (f *file) apply(cfg *Config) *Error {
	st, hot := &cfg.Storage, &cfg.Storage.Hot
	type result struct {
		key string
		err error
	}
	results := []result{
		{"storage.max_segment_bytes", into(f.Storage.MaxSegmentBytes, &st.MaxSegmentBytes, sizeBytes)},
		{"storage.hot.path", into(f.Storage.Hot.Path, &hot.Path, same)},
		{"storage.hot.max_bytes", into(f.Storage.Hot.MaxBytes, &hot.MaxBytes, sizeBytes)},
		{"storage.hot.spool_dir", into(f.Storage.Hot.SpoolDir, &hot.SpoolDir, same)},
	}
	if fs3 := f.Storage.S3; fs3 != nil {
		s := NewS3("")
		st.S3 = s
		results = append(results,
			result{"storage.s3.bucket", into(fs3.Bucket, &s.Bucket, same)},
			result{"storage.s3.region", into(fs3.Region, &s.Region, same)},
			result{"storage.s3.endpoint", into(fs3.Endpoint, &s.Endpoint, same)},
			result{"storage.s3.access_key_id", into(fs3.AccessKeyID, &s.AccessKeyID, same)},
			result{"storage.s3.secret_access_key", into(fs3.SecretAccessKey, &s.SecretAccessKey, secretOf)},
			result{"storage.s3.path_style", into(fs3.PathStyle, &s.PathStyle, same)},
			result{"storage.s3.pool_size", into(fs3.PoolSize, &s.PoolSize, count)},
			result{"storage.s3.timeout_secs", into(fs3.TimeoutSecs, &s.Timeout, seconds)},
			result{"storage.s3.max_retries", into(fs3.MaxRetries, &s.MaxRetries, count)},
			result{"storage.s3.prefix", into(fs3.Prefix, &s.Prefix, same)},
			result{"storage.s3.refresh_secs", into(fs3.RefreshSecs, &s.Refresh, seconds)},
			result{"storage.s3.insecure_skip_verify", into(fs3.InsecureSkipVerify, &s.InsecureSkipVerify, same)},
			result{"storage.s3.assume_sole_writer", into(fs3.AssumeSoleWriter, &s.AssumeSoleWriter, same)},
		)
	}
	results = append(results,
		result{"cache.max_bytes", into(f.Cache.MaxBytes, &cfg.Cache.MaxBytes, sizeBytes)},
		result{"cache.prefetch_segments", into(f.Cache.PrefetchSegments, &cfg.Cache.PrefetchSegments, count)},
		result{"tiering.archive_after_secs", into(f.Tiering.ArchiveAfterSecs, &cfg.Tiering.ArchiveAfter, seconds)},
		result{"tiering.check_interval_secs", into(f.Tiering.CheckIntervalSecs, &cfg.Tiering.CheckInterval, seconds)},
		result{"tiering.compression", into(f.Tiering.Compression, &cfg.Tiering.Compression, same)},
		result{"tiering.verify_merkle", into(f.Tiering.VerifyMerkle, &cfg.Tiering.VerifyMerkle, same)},
	)
	for _, r := range results {
		if r.err != nil {
			return &Error{Key: r.key, Err: r.err}
		}
	}
	return nil
}

// s3Vars are the variables that adjust the cold tier, after S3_BUCKET.
var s3Vars = []string{"S3_REGION", "S3_ENDPOINT", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "S3_PATH_STYLE"}

// applyEnv applies the S3_* variables, scribe-ledger's names. S3_BUCKET
// alone creates the cold tier; the others only adjust one that exists. An
// empty variable counts as unset.
func applyEnv(cfg *Config, env func(string) string) error {
	if bucket := env("S3_BUCKET"); bucket != "" {
		if cfg.Storage.S3 == nil {
			cfg.Storage.S3 = NewS3(bucket)
		}
		cfg.Storage.S3.Bucket = bucket
	}
	s := cfg.Storage.S3
	if s == nil {
		for _, v := range s3Vars {
			if env(v) != "" {
				cfg.loadWarnings = append(cfg.loadWarnings, v+" is set but ignored: there is no cold tier without S3_BUCKET or a [storage.s3] section")
			}
		}
		return nil
	}
	for v, dst := range map[string]*string{"S3_REGION": &s.Region, "S3_ENDPOINT": &s.Endpoint, "S3_ACCESS_KEY_ID": &s.AccessKeyID} {
		if val := env(v); val != "" {
			*dst = val
		}
	}
	if val := env("S3_SECRET_ACCESS_KEY"); val != "" {
		s.SecretAccessKey = Secret(val)
	}
	if val := env("S3_PATH_STYLE"); val != "" {
		switch strings.ToLower(val) {
		case "true", "1":
			s.PathStyle = true
		case "false", "0":
			s.PathStyle = false
		default:
			return &Error{Key: "S3_PATH_STYLE", Err: fmt.Errorf("must be true, false, 1 or 0, got %q", val)}
		}
	}
	return nil
}
