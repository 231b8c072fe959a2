package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"
)

// flagValue is the value of a string flag given closest to the command:
// mount's own --log-level wins over the global one, which wins over the
// default.
func flagValue(c *cli.Context, name, def string) string {
	for _, cc := range c.Lineage() {
		if cc.IsSet(name) {
			return cc.String(name)
		}
	}
	return def
}

// newLogger builds the process's logger from --log-level and --log-format.
// Every command logs to standard error (a daemon's standard error is its log
// file). The ring, when not nil, keeps the last warnings and errors for
// `scribefs status`.
func newLogger(c *cli.Context, w io.Writer, ring *logRing) (*slog.Logger, error) {
	return newLoggerAt(c, w, ring, "info")
}

// newCommandLogger is the logger of a command that opens the store itself
// (no mount running): it prints its own results, so its log shows only
// warnings and errors unless --log-level says otherwise.
func newCommandLogger(c *cli.Context, w io.Writer) (*slog.Logger, error) {
	return newLoggerAt(c, w, nil, "warn")
}

func newLoggerAt(c *cli.Context, w io.Writer, ring *logRing, defaultLevel string) (*slog.Logger, error) {
	var level slog.Level
	lv := flagValue(c, "log-level", defaultLevel)
	if err := level.UnmarshalText([]byte(lv)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", lv)
	}
	format := flagValue(c, "log-format", "text")
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, usagef("--log-format %q: want text or json", format)
	}
	if ring != nil {
		h = &ringHandler{Handler: h, ring: slog.NewTextHandler(ring, &slog.HandlerOptions{Level: slog.LevelWarn})}
	}
	return slog.New(h), nil
}

// logRing keeps the last lines written to it. slog's text handler writes
// each record with one Write, so a Write is a line.
type logRing struct {
	// mu guards lines and next.
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

func newLogRing(n int) *logRing { return &logRing{lines: make([]string, n)} }

func (r *logRing) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines[r.next] = strings.TrimRight(string(p), "\n")
	r.next = (r.next + 1) % len(r.lines)
	r.full = r.full || r.next == 0
	return len(p), nil
}

// Lines returns the kept lines, oldest first.
func (r *logRing) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]string(nil), r.lines[:r.next]...)
	}
	return append(append([]string(nil), r.lines[r.next:]...), r.lines[:r.next]...)
}

// ringHandler logs through Handler and copies warnings and errors, as text,
// to ring.
type ringHandler struct {
	slog.Handler
	ring slog.Handler
}

func (h *ringHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, l) || h.ring.Enabled(ctx, l)
}

func (h *ringHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.ring.Enabled(ctx, r.Level) {
		h.ring.Handle(ctx, r.Clone())
	}
	if h.Handler.Enabled(ctx, r.Level) {
		return h.Handler.Handle(ctx, r)
	}
	return nil
}

func (h *ringHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &ringHandler{Handler: h.Handler.WithAttrs(as), ring: h.ring.WithAttrs(as)}
}

func (h *ringHandler) WithGroup(name string) slog.Handler {
	return &ringHandler{Handler: h.Handler.WithGroup(name), ring: h.ring.WithGroup(name)}
}
