package segment

import (
	"errors"
	"fmt"
	"strconv"
)

// ID names a segment. Every uint64 is a valid ID.
type ID uint64

// ErrInvalidID is returned (wrapped) by ParseID when a name is not the
// canonical decimal form of a uint64.
var ErrInvalidID = errors.New("invalid segment id")

// ParseID parses the canonical decimal form of an ID: digits only, no sign,
// no leading zeros (except "0" itself), at most 2^64-1. Anything else, such as
// "abc", "-1", "007" or "18446744073709551616", is rejected so that each
// segment has exactly one name.
func ParseID(s string) (ID, error) {
	if s == "" {
		return 0, fmt.Errorf("%w %q: empty", ErrInvalidID, s)
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%w %q: leading zero", ErrInvalidID, s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w %q: not a decimal number", ErrInvalidID, s)
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w %q: larger than 18446744073709551615", ErrInvalidID, s)
	}
	return ID(v), nil
}

// String returns the canonical decimal name.
func (id ID) String() string { return strconv.FormatUint(uint64(id), 10) }

// Hex returns the id as 16 lowercase hex digits, as Scribe Ledger object
// names use it.
func (id ID) Hex() string { return fmt.Sprintf("%016x", uint64(id)) }

// ParseHex parses the 16-digit lowercase hex form produced by Hex.
func ParseHex(s string) (ID, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("%w %q: want 16 hex digits", ErrInvalidID, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return 0, fmt.Errorf("%w %q: want lowercase hex", ErrInvalidID, s)
		}
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w %q", ErrInvalidID, s)
	}
	return ID(v), nil
}
