package config

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Size is a byte count that the file may give as an integer (4096) or as a
// string with an optional unit ("4096", "512k", "256MiB", "1.5GB").
//
// Units are case-insensitive. B is bytes; KiB, MiB, GiB, TiB and the bare
// K, M, G, T are powers of 1024; KB, MB, GB, TB are powers of 1000. A
// fraction is allowed as long as the result is a whole number of bytes.
type Size int64

// sizeUnits maps a lower-cased unit to its multiplier.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// maxSizeLen bounds the input ParseSize will look at; nothing sensible is
// longer, and it keeps the arithmetic on adversarial input cheap.
const maxSizeLen = 64

// ParseSize parses a size as described at Size. Negative sizes are errors.
func ParseSize(s string) (int64, error) {
	n, err := parseSize(s)
	if err != nil {
		if len(s) > maxSizeLen {
			s = s[:maxSizeLen] + "..."
		}
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	return n, nil
}

func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return 0, errors.New("empty")
	case len(s) > maxSizeLen:
		return 0, errors.New("too long")
	case s[0] == '-':
		return 0, errors.New("must not be negative")
	}

	intPart, rest := leadingDigits(s)
	fracPart := ""
	if strings.HasPrefix(rest, ".") {
		fracPart, rest = leadingDigits(rest[1:])
		if fracPart == "" {
			return 0, errors.New("want digits after the decimal point")
		}
	}
	if intPart == "" {
		return 0, errors.New("want a number, optionally followed by a unit such as KiB, MiB, GiB, TiB, KB, MB, GB or TB")
	}
	unit := strings.TrimSpace(rest)
	mult, ok := sizeUnits[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q (want B, K, KiB, KB, M, MiB, MB, G, GiB, GB, T, TiB or TB)", unit)
	}

	// bytes = (intPart.fracPart) * mult, computed exactly.
	n, _ := new(big.Int).SetString(intPart+fracPart, 10)
	n.Mul(n, big.NewInt(mult))
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(fracPart))), nil)
	q, r := new(big.Int).QuoRem(n, scale, new(big.Int))
	if r.Sign() != 0 {
		return 0, errors.New("not a whole number of bytes")
	}
	if !q.IsInt64() {
		return 0, errors.New("too large")
	}
	return q.Int64(), nil
}

// leadingDigits splits s after its leading ASCII digits.
func leadingDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return s[:i], s[i:]
}

// formatSize renders n with the largest unit that divides it exactly, so
// that ParseSize(formatSize(n)) == n: 268435456 is "256MiB", 1500000000 is
// "1500MB", 1000 is "1KB", 4097 is "4097".
func formatSize(n int64) string {
	units := []struct {
		name string
		mult int64
	}{
		{"TiB", 1 << 40}, {"TB", 1e12}, {"GiB", 1 << 30}, {"GB", 1e9},
		{"MiB", 1 << 20}, {"MB", 1e6}, {"KiB", 1 << 10}, {"KB", 1e3},
	}
	if n > 0 {
		for _, u := range units {
			if n%u.mult == 0 {
				return strconv.FormatInt(n/u.mult, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(n, 10)
}

// String renders the size with the largest exact unit ("256MiB").
func (s Size) String() string { return formatSize(int64(s)) }

// UnmarshalTOML accepts a TOML integer or a size string. A negative integer
// is kept: range checks belong to Validate, which names the key.
func (s *Size) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		*s = Size(v)
		return nil
	case string:
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		*s = Size(n)
		return nil
	}
	return fmt.Errorf(`must be an integer or a size string such as "256MiB", got %s`, tomlTypeName(v))
}

// UnmarshalText parses a size string, so a Size can back a flag
// (flag.TextVar) or any other text decoder.
func (s *Size) UnmarshalText(text []byte) error {
	n, err := ParseSize(string(text))
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
}

// MarshalText renders the size as String does.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
