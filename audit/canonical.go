package audit

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds JSON nesting, matching encoding/json's own limit so that
// anything the proxy's decoder produced can be canonicalized.
const maxDepth = 10000

type jkind uint8

const (
	jNull jkind = iota
	jBool
	jNumber
	jString
	jArray
	jObject
)

// jvalue is a parsed JSON value. Object members are kept sorted by key
// (bytewise, i.e. by code point) once parsing finishes.
type jvalue struct {
	kind jkind
	text string // number literal exactly as written, string content, or "true"/"false"
	arr  []jvalue
	obj  []jmember
}

type jmember struct {
	key string
	val jvalue
}

// parseJSON parses exactly one JSON value (surrounding whitespace allowed)
// with encoding/json's semantics: the same grammar; strings unescaped as it
// unescapes them (invalid UTF-8 and unpaired surrogate escapes become
// U+FFFD); numbers keep their literal text, as json.Number does. Nesting
// deeper than maxDepth is an error, and so are duplicate object keys,
// which have no single canonical form. A fuzz test holds it to
// encoding/json's decoder.
//
// It is a hand-written scanner rather than json.Decoder.Token, which
// boxes every token and made verification ~30x slower.
func parseJSON(b []byte) (jvalue, error) {
	p := jparser{b: b}
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return jvalue{}, err
	}
	p.skipSpace()
	if p.i != len(p.b) {
		return jvalue{}, p.errorf("trailing data after JSON value")
	}
	return v, nil
}

type jparser struct {
	b []byte
	i int
}

func (p *jparser) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *jparser) unexpected() error {
	if p.i >= len(p.b) {
		return p.errorf("unexpected end of JSON input")
	}
	return p.errorf("invalid character %q", p.b[p.i])
}

func (p *jparser) skipSpace() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// expect consumes c (after optional whitespace).
func (p *jparser) expect(c byte) error {
	p.skipSpace()
	if p.i >= len(p.b) || p.b[p.i] != c {
		return p.unexpected()
	}
	p.i++
	return nil
}

func (p *jparser) peek() byte {
	p.skipSpace()
	if p.i >= len(p.b) {
		return 0
	}
	return p.b[p.i]
}

func (p *jparser) value(depth int) (jvalue, error) {
	if depth > maxDepth {
		return jvalue{}, fmt.Errorf("JSON nested deeper than %d", maxDepth)
	}
	if p.i >= len(p.b) {
		return jvalue{}, p.unexpected()
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		s, err := p.str()
		return jvalue{kind: jString, text: s}, err
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true", jBool)
	case c == 'f':
		return p.literal("false", jBool)
	case c == 'n':
		return p.literal("null", jNull)
	}
	return jvalue{}, p.unexpected()
}

func (p *jparser) literal(word string, kind jkind) (jvalue, error) {
	if !bytes.HasPrefix(p.b[p.i:], []byte(word)) {
		return jvalue{}, p.errorf("invalid literal, want %s", word)
	}
	p.i += len(word)
	v := jvalue{kind: kind}
	if kind == jBool {
		v.text = word
	}
	return v, nil
}

func (p *jparser) object(depth int) (jvalue, error) {
	p.i++ // '{'
	v := jvalue{kind: jObject}
	if p.peek() == '}' {
		p.i++
		return v, nil
	}
	for {
		if p.peek() != '"' {
			return jvalue{}, p.unexpected()
		}
		key, err := p.str()
		if err != nil {
			return jvalue{}, err
		}
		if err := p.expect(':'); err != nil {
			return jvalue{}, err
		}
		p.skipSpace()
		e, err := p.value(depth + 1)
		if err != nil {
			return jvalue{}, err
		}
		v.obj = append(v.obj, jmember{key: key, val: e})
		switch p.peek() {
		case ',':
			p.i++
			continue
		case '}':
			p.i++
		default:
			return jvalue{}, p.unexpected()
		}
		break
	}
	slices.SortFunc(v.obj, func(a, b jmember) int { return strings.Compare(a.key, b.key) })
	for i := 1; i < len(v.obj); i++ {
		if v.obj[i].key == v.obj[i-1].key {
			return jvalue{}, fmt.Errorf("duplicate object key %q", v.obj[i].key)
		}
	}
	return v, nil
}

func (p *jparser) array(depth int) (jvalue, error) {
	p.i++ // '['
	v := jvalue{kind: jArray}
	if p.peek() == ']' {
		p.i++
		return v, nil
	}
	for {
		p.skipSpace()
		e, err := p.value(depth + 1)
		if err != nil {
			return jvalue{}, err
		}
		v.arr = append(v.arr, e)
		switch p.peek() {
		case ',':
			p.i++
			continue
		case ']':
			p.i++
			return v, nil
		}
		return jvalue{}, p.unexpected()
	}
}

// number accepts JSON's grammar, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?,
// and keeps the literal.
func (p *jparser) number() (jvalue, error) {
	start := p.i
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.b[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.b) && p.b[p.i] == '0':
		p.i++
	case digits() == 0:
		return jvalue{}, p.unexpected()
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return jvalue{}, p.unexpected()
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return jvalue{}, p.unexpected()
		}
	}
	return jvalue{kind: jNumber, text: string(p.b[start:p.i])}, nil
}

// str reads a string starting at its opening quote and returns its
// content unescaped as encoding/json unescapes it.
func (p *jparser) str() (string, error) {
	p.i++ // '"'
	start := p.i
	// Fast path: printable ASCII without escapes is its own content.
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			p.i++
			return string(p.b[start : p.i-1]), nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		p.i++
	}
	out := append(make([]byte, 0, p.i-start+16), p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(out), nil
		case c < 0x20:
			return "", p.errorf("control character %#x in string", c)
		case c == '\\':
			r, ok := p.escape()
			if !ok {
				return "", p.errorf("invalid escape in string")
			}
			out = utf8.AppendRune(out, r)
		case c < utf8.RuneSelf:
			out = append(out, c)
			p.i++
		default:
			// Invalid UTF-8 becomes U+FFFD byte by byte, as in encoding/json.
			r, size := utf8.DecodeRune(p.b[p.i:])
			out = utf8.AppendRune(out, r)
			p.i += size
		}
	}
	return "", p.unexpected()
}

// escape decodes the escape at p.i (a backslash). A \u escape of a high
// surrogate followed by a \u escape of a low one is a pair; any other
// surrogate escape decodes to U+FFFD on its own, leaving what follows.
func (p *jparser) escape() (rune, bool) {
	if p.i+1 >= len(p.b) {
		return 0, false
	}
	c := p.b[p.i+1]
	p.i += 2
	switch c {
	case '"', '\\', '/':
		return rune(c), true
	case 'b':
		return '\b', true
	case 'f':
		return '\f', true
	case 'n':
		return '\n', true
	case 'r':
		return '\r', true
	case 't':
		return '\t', true
	case 'u':
		r, ok := hex4(p.b[p.i:])
		if !ok {
			return 0, false
		}
		p.i += 4
		if utf16.IsSurrogate(r) {
			if len(p.b) >= p.i+6 && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
				if r2, ok := hex4(p.b[p.i+2:]); ok {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						p.i += 6
						return d, true
					}
				}
			}
			return utf8.RuneError, true
		}
		return r, true
	}
	return 0, false
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// appendCanonical writes v in canonical form: no insignificant whitespace,
// object keys sorted, numbers as written, strings escaped by appendString.
func appendCanonical(dst []byte, v *jvalue) []byte {
	switch v.kind {
	case jNull:
		return append(dst, "null"...)
	case jBool, jNumber:
		return append(dst, v.text...)
	case jString:
		return appendString(dst, v.text)
	case jArray:
		dst = append(dst, '[')
		for i := range v.arr {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCanonical(dst, &v.arr[i])
		}
		return append(dst, ']')
	default: // jObject
		dst = append(dst, '{')
		for i := range v.obj {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, v.obj[i].key)
			dst = append(dst, ':')
			dst = appendCanonical(dst, &v.obj[i].val)
		}
		return append(dst, '}')
	}
}

// canonicalJSON returns the canonical form of one JSON value after applying
// the redaction paths to a parsed copy.
func canonicalJSON(b []byte, redact []redactPath) ([]byte, error) {
	v, err := parseJSON(b)
	if err != nil {
		return nil, err
	}
	for _, p := range redact {
		p.apply(&v)
	}
	return appendCanonical(make([]byte, 0, len(b)), &v), nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string exactly as encoding/json does with
// HTML escaping off — `"` and `\` backslash-escaped; \b \f \n \r \t as short
// escapes; other bytes below 0x20 as \u00xx (lower-case hex); U+2028 and
// U+2029 as \u2028 and \u2029; everything else as literal UTF-8 — except
// that each invalid UTF-8 byte becomes a literal U+FFFD instead of the
// escape \ufffd. That keeps canonical text a fixed point: decoding and
// re-encoding it gives the same bytes.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// redactedValue replaces every redacted value, whatever its JSON type.
const redactedValue = "[redacted]"

// redactPath is a parsed Redact pattern: dot-separated segments, each a
// literal object key or "*" for any key.
type redactPath []string

func parseRedactPaths(patterns []string) ([]redactPath, error) {
	paths := make([]redactPath, 0, len(patterns))
	for _, p := range patterns {
		segs := strings.Split(p, ".")
		for _, s := range segs {
			if err := checkSegment(s); err != nil {
				return nil, fmt.Errorf("%w: redact pattern %q: %s", ErrInvalidOptions, p, err)
			}
		}
		paths = append(paths, segs)
	}
	return paths, nil
}

func checkSegment(s string) error {
	switch {
	case s == "":
		return errors.New("empty path segment")
	case s == "*":
		return nil
	case strings.Contains(s, "*"):
		return errors.New(`"*" must be a whole segment; partial globs are not supported`)
	case strings.IndexFunc(s, unicode.IsSpace) >= 0 || strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("whitespace or control character in path segment")
	}
	return nil
}

// apply replaces the values the path names. Arrays are transparent: a
// segment applies to every element, so "users.password" redacts the
// password of each element of a repeated field "users".
func (p redactPath) apply(v *jvalue) {
	switch v.kind {
	case jArray:
		for i := range v.arr {
			p.apply(&v.arr[i])
		}
	case jObject:
		for i := range v.obj {
			m := &v.obj[i]
			if p[0] != "*" && p[0] != m.key {
				continue
			}
			if len(p) == 1 {
				m.val = jvalue{kind: jString, text: redactedValue}
			} else {
				p[1:].apply(&m.val)
			}
		}
	}
}
