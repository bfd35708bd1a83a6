package audit

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"
)

// checkCanonical reports whether b is in canonical form — exactly the
// bytes appendCanonical would write for parseJSON(b) — without building
// the value, and returns the raw values of b's top-level members when b is
// an object, appended to top[:0] (scratch space a caller may reuse).
// Verification runs it on every record; parsing and re-encoding instead
// allocated a value per token. A fuzz test holds it to the
// parse-and-compare definition.
func checkCanonical(b []byte, top []rawMember) ([]rawMember, error) {
	s := canonScanner{b: b, top: top[:0]}
	if err := s.value(0); err != nil {
		return nil, err
	}
	if s.i != len(b) {
		return nil, s.errorf("trailing data")
	}
	return s.top, nil
}

// rawMember is a top-level member: its key's raw content (between the
// quotes) and its value's raw bytes (a string's with its quotes).
type rawMember struct {
	key []byte
	val []byte
}

type canonScanner struct {
	b   []byte
	i   int
	top []rawMember
}

func (s *canonScanner) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", s.i, fmt.Sprintf(format, args...))
}

func (s *canonScanner) next() byte {
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *canonScanner) value(depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("JSON nested deeper than %d", maxDepth)
	}
	switch c := s.next(); {
	case c == '{':
		return s.object(depth)
	case c == '[':
		return s.array(depth)
	case c == '"':
		_, _, err := s.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return s.errorf("unexpected %q", s.next())
}

func (s *canonScanner) literal(w string) error {
	if !bytes.HasPrefix(s.b[s.i:], []byte(w)) {
		return s.errorf("invalid literal")
	}
	s.i += len(w)
	return nil
}

func (s *canonScanner) object(depth int) error {
	s.i++ // '{'
	if s.next() == '}' {
		s.i++
		return nil
	}
	var prev []byte
	prevEsc := false
	for first := true; ; first = false {
		if s.next() != '"' {
			return s.errorf("want a key")
		}
		key, esc, err := s.str()
		if err != nil {
			return err
		}
		if !first && !keyLess(prev, prevEsc, key, esc) {
			return s.errorf("key %q not after %q: unsorted or duplicate", key, prev)
		}
		prev, prevEsc = key, esc
		if s.next() != ':' {
			return s.errorf("want ':'")
		}
		s.i++
		start := s.i
		if err := s.value(depth + 1); err != nil {
			return err
		}
		if depth == 0 {
			s.top = append(s.top, rawMember{key: key, val: s.b[start:s.i]})
		}
		switch s.next() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.errorf("want ',' or '}'")
		}
	}
}

func (s *canonScanner) array(depth int) error {
	s.i++ // '['
	if s.next() == ']' {
		s.i++
		return nil
	}
	for {
		if err := s.value(depth + 1); err != nil {
			return err
		}
		switch s.next() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.errorf("want ',' or ']'")
		}
	}
}

func (s *canonScanner) number() error {
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.next() == '-' {
		s.i++
	}
	switch {
	case s.next() == '0':
		s.i++
	case digits() == 0:
		return s.errorf("invalid number")
	}
	if s.next() == '.' {
		s.i++
		if digits() == 0 {
			return s.errorf("invalid number")
		}
	}
	if c := s.next(); c == 'e' || c == 'E' {
		s.i++
		if c := s.next(); c == '+' || c == '-' {
			s.i++
		}
		if digits() == 0 {
			return s.errorf("invalid number")
		}
	}
	return nil
}

// str checks a string in canonical spelling (appendString's) and returns
// its raw content and whether it has escapes.
func (s *canonScanner) str() (raw []byte, escaped bool, err error) {
	s.i++ // '"'
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], escaped, nil
		case c < 0x20:
			return nil, false, s.errorf("unescaped control character")
		case c == '\\':
			if !canonicalEscape(s.b[s.i:]) {
				return nil, false, s.errorf("escape not in canonical spelling")
			}
			escaped = true
			if s.b[s.i+1] == 'u' {
				s.i += 6
			} else {
				s.i += 2
			}
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, size := utf8.DecodeRune(s.b[s.i:])
			if (r == utf8.RuneError && size == 1) || r == '\u2028' || r == '\u2029' {
				return nil, false, s.errorf("invalid UTF-8 or unescaped U+2028/U+2029")
			}
			s.i += size
		}
	}
	return nil, false, errors.New("unterminated string")
}

// canonicalEscape reports whether b starts with an escape appendString
// writes: \" \\ \b \f \n \r \t, \u00xx (lower-case hex) for the other
// control characters, \u2028 and \u2029.
func canonicalEscape(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	switch b[1] {
	case '"', '\\', 'b', 'f', 'n', 'r', 't':
		return true
	case 'u':
		if len(b) < 6 {
			return false
		}
		for _, c := range b[2:6] {
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
		r, _ := hex4(b[2:6])
		switch {
		case r == '\b', r == '\f', r == '\n', r == '\r', r == '\t':
			return false
		case r < 0x20, r == '\u2028', r == '\u2029':
			return true
		}
	}
	return false
}

// keyLess compares two canonical raw keys by their decoded bytes, as
// parseJSON sorts them.
func keyLess(a []byte, aEsc bool, b []byte, bEsc bool) bool {
	if aEsc {
		a = unescapeCanonical(a)
	}
	if bEsc {
		b = unescapeCanonical(b)
	}
	return bytes.Compare(a, b) < 0
}

// unescapeCanonical decodes the content of a string in canonical spelling.
func unescapeCanonical(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			out = append(out, raw[i])
			continue
		}
		switch raw[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, _ := hex4(raw[i+2 : i+6])
			out = utf8.AppendRune(out, r)
			i += 4
		default: // '"' or '\\'
			out = append(out, raw[i+1])
		}
		i++
	}
	return out
}
