package config

import "fmt"

// The TOML parser's cost grows with the square of a key's parts and of the
// nesting of inline tables (a dotted key of 4,000 parts, 8 KB, allocates
// 643 MiB; 5,000 nested inline tables 3.8 GiB), so a file's shape is
// checked before it is parsed. scribefs reads keys of at most three parts
// (storage.s3.bucket) and scalar values; the bounds leave room for the
// usual error about an unknown key or a wrong type.
const (
	maxKeyParts = 8
	maxNesting  = 8
)

// checkShape scans TOML text without parsing it and refuses keys (dotted
// keys, table headers, keys of inline tables; a header's parts count with
// the keys under it) of more than maxKeyParts parts, and values nested
// more than maxNesting arrays or inline tables deep. It only needs to
// tell strings, comments, keys and brackets apart: anything it lets
// through is parsed, and judged, by the TOML parser.
func checkShape(data []byte) error {
	var (
		stack  []byte // open '[' and '{' of the value being scanned
		inKey  = true // scanning a key (up to its '=')
		header bool   // inside a [table] or [[table]] header
		parts  = 1    // parts of the key being scanned
		base   = 0    // parts of the current table header
		line   = 1
	)
	refuse := func(what string) error { return &shapeError{line: line, msg: what + "; not a scribefs configuration"} }
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch c {
		case '\n':
			line++
			if len(stack) == 0 && !header {
				inKey, parts = true, 1
			}
		case '#':
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
		case '"', '\'':
			end, nl, err := skipString(data, i)
			if err != nil {
				return refuse(err.Error())
			}
			line += nl
			i = end
		case '.':
			if inKey || header {
				parts++
				total := parts
				if inKey && len(stack) == 0 && !header {
					total += base
				}
				if total > maxKeyParts {
					return refuse(fmt.Sprintf("a key of more than %d parts", maxKeyParts))
				}
			}
		case '=':
			if inKey && !header {
				inKey = false
			}
		case '[':
			switch {
			case inKey && len(stack) == 0 && !header:
				header, parts = true, 1
				if i+1 < len(data) && data[i+1] == '[' {
					i++
				}
			case !inKey:
				stack = append(stack, '[')
			}
		case ']':
			switch {
			case header:
				header, base = false, parts
				if i+1 < len(data) && data[i+1] == ']' {
					i++
				}
				parts = 1
			case len(stack) > 0:
				stack = stack[:len(stack)-1]
			}
		case '{':
			if !inKey {
				stack = append(stack, '{')
				inKey, parts = true, 1
			}
		case '}':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
				inKey = false
			}
		case ',':
			if len(stack) > 0 && stack[len(stack)-1] == '{' {
				inKey, parts = true, 1
			}
		}
		if len(stack) > maxNesting {
			return refuse(fmt.Sprintf("values nested more than %d deep", maxNesting))
		}
	}
	return nil
}

// shapeError is a file checkShape refuses, and the line where it saw why.
type shapeError struct {
	line int
	msg  string
}

func (e *shapeError) Error() string { return e.msg }

// skipString returns the index of the last byte of the string that starts
// at data[i] (basic or literal, single- or multi-line) and the newlines in
// it.
func skipString(data []byte, i int) (end, newlines int, err error) {
	q := data[i]
	multi := i+2 < len(data) && data[i+1] == q && data[i+2] == q
	j := i + 1
	if multi {
		j = i + 3
	}
	for ; j < len(data); j++ {
		switch data[j] {
		case '\\':
			if q == '"' {
				j++
			}
		case '\n':
			if !multi {
				return j - 1, 0, nil // unterminated: the parser will say so
			}
			newlines++
		case q:
			if !multi {
				return j, newlines, nil
			}
			if j+2 < len(data) && data[j+1] == q && data[j+2] == q {
				// Up to two more quotes may end the string's content.
				j += 2
				for j+1 < len(data) && data[j+1] == q {
					j++
				}
				return j, newlines, nil
			}
		}
	}
	return len(data) - 1, newlines, nil
}
