package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestLogRingKeepsLastWarnings(t *testing.T) {
	var out bytes.Buffer
	ring := newLogRing(3)
	var log = mustLogger(t, []string{"scribefs", "--log-format", "json", "--log-level", "error", "x"}, &out, ring)
	for i := range 5 {
		log.Warn("archive failed", "op", "archive", "segment", i)
	}
	log.Info("not kept")
	lines := ring.Lines()
	if len(lines) != 3 || !strings.Contains(lines[0], "segment=2") || !strings.Contains(lines[2], "segment=4") {
		t.Fatalf("ring: %q", lines)
	}
	if out.Len() != 0 {
		t.Fatalf("--log-level error let warnings through: %s", out.String())
	}
	log.Error("boom", "op", "read", "segment", 9)
	var rec map[string]any
	if err := json.Unmarshal(out.Bytes(), &rec); err != nil || rec["op"] != "read" {
		t.Fatalf("JSON error line: %q %v", out.String(), err)
	}
}

// mustLogger builds the logger a command with args would get.
func mustLogger(t *testing.T, args []string, w *bytes.Buffer, ring *logRing) *slog.Logger {
	t.Helper()
	var got *slog.Logger
	app := newApp(nil, w, w)
	app.Commands = append(app.Commands, &cli.Command{Name: "x", Action: func(c *cli.Context) error {
		l, err := newLogger(c, w, ring)
		got = l
		return err
	}})
	if err := app.Run(args); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestMountFlagsOverrideGlobal: mount's own --log-format wins over the
// global one.
func TestMountFlagsOverrideGlobal(t *testing.T) {
	var out bytes.Buffer
	var format string
	app := newApp(nil, &out, &out)
	app.Commands = append(app.Commands, &cli.Command{Name: "x", Flags: []cli.Flag{&cli.StringFlag{Name: "log-format"}}, Action: func(c *cli.Context) error {
		format = flagValue(c, "log-format", "text")
		return nil
	}})
	app.Run([]string{"scribefs", "--log-format", "json", "x", "--log-format", "text"})
	if format != "text" {
		t.Fatalf("local flag lost: %q", format)
	}
	app.Run([]string{"scribefs", "--log-format", "json", "x"})
	if format != "json" {
		t.Fatalf("global flag lost: %q", format)
	}
}

// TestMountHelperTranslatesOptions runs contrib/mount.fuse.scribefs with a
// stand-in binary that prints its arguments.
func TestMountHelperTranslatesOptions(t *testing.T) {
	dir := t.TempDir()
	stub := filepath.Join(dir, "scribefs")
	os.WriteFile(stub, []byte("#!/bin/sh\necho \"$@\"\n"), 0o755)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"scribefs", "/mnt/s", "-o", "rw,config=/etc/s.toml,_netdev,nofail"}, "--config /etc/s.toml mount --daemon /mnt/s"},
		{[]string{"scribefs", "/mnt/s", "-n", "-o", "ro,allow_other,config=/c,log_format=json,x-systemd.automount"}, "--config /c mount --daemon --read-only --allow-other --log-format json /mnt/s"},
		{[]string{"none", "/mnt/s"}, "mount --daemon /mnt/s"},
	} {
		cmd := exec.Command("sh", append([]string{"../../contrib/mount.fuse.scribefs"}, c.args...)...)
		cmd.Env = append(os.Environ(), "SCRIBEFS_BIN="+stub)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != c.want {
			t.Errorf("%v: %q %v, want %q", c.args, out, err, c.want)
		}
	}
}
