package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load as a config file. Load must not
// panic; its errors must be one-line *Errors; what it accepts must pass
// Validate and survive a round trip through Redacted.
func FuzzLoad(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzLoad.
	dir := f.TempDir()
	env := envOf(map[string]string{"HOME": "/home/fuzz"})
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "config.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path, env)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load accepted what Validate rejects: %v", err)
		}
		_ = fmt.Sprintf("%+v %v", cfg, cfg.Warnings())

		if cfg.Storage.S3 != nil {
			cfg.Storage.S3.SecretAccessKey = "" // Redacted masks it
		}
		if err := os.WriteFile(path, []byte(cfg.Redacted()), 0o600); err != nil {
			t.Fatal(err)
		}
		back, err := Load(path, env)
		if err != nil {
			t.Fatalf("Redacted output does not load: %v\n%s", err, cfg.Redacted())
		}
		if !reflect.DeepEqual(back.Storage, cfg.Storage) || back.Cache != cfg.Cache || back.Tiering != cfg.Tiering {
			t.Fatalf("Redacted output loads differently:\n%s\ngot %+v\nwant %+v", cfg.Redacted(), back, cfg)
		}
	})
}

// FuzzParseSize checks that ParseSize never panics, never returns a
// negative size, and reads back what formatSize writes.
func FuzzParseSize(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzParseSize.
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		if back, err := ParseSize(formatSize(n)); err != nil || back != n {
			t.Fatalf("ParseSize(formatSize(%d) = %q) = %d, %v", n, formatSize(n), back, err)
		}
	})
}
