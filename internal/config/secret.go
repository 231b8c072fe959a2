package config

import (
	"fmt"
	"io"
)

// Secret is a credential. Every way of formatting it (%v, %+v, %#v, %s, %q,
// %x, String, MarshalText) yields "***", or "" when it is empty, so a
// Config can be logged without leaking it. Use Reveal to hand the value to
// the code that needs it.
type Secret string

const redacted = "***"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) masked() string {
	if s == "" {
		return ""
	}
	return redacted
}

// String returns "***", or "" for an empty secret.
func (s Secret) String() string { return s.masked() }

// GoString returns the quoted mask, like String.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.masked()) }

// Format prints the mask whatever the verb and flags, so fmt never reaches
// the underlying string (which it would for %x or %q on a plain string).
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' || (verb == 'v' && f.Flag('#')) {
		fmt.Fprintf(f, "%q", s.masked())
		return
	}
	io.WriteString(f, s.masked())
}

// MarshalText returns the mask, so encoders (JSON, TOML, slog) redact too.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.masked()), nil }
