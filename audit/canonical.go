package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
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

// parseJSON parses exactly one JSON value. Numbers keep their literal text;
// strings are unescaped (invalid UTF-8 becomes U+FFFD, as encoding/json
// does); duplicate object keys are an error because they have no single
// canonical form.
func parseJSON(b []byte) (jvalue, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err != nil {
		return jvalue{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("trailing data after JSON value")
		}
		return jvalue{}, err
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int) (jvalue, error) {
	if depth > maxDepth {
		return jvalue{}, fmt.Errorf("JSON nested deeper than %d", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return jvalue{}, err
	}
	switch t := tok.(type) {
	case nil:
		return jvalue{kind: jNull}, nil
	case bool:
		if t {
			return jvalue{kind: jBool, text: "true"}, nil
		}
		return jvalue{kind: jBool, text: "false"}, nil
	case json.Number:
		return jvalue{kind: jNumber, text: string(t)}, nil
	case string:
		return jvalue{kind: jString, text: t}, nil
	case json.Delim:
		switch t {
		case '[':
			v := jvalue{kind: jArray}
			for dec.More() {
				e, err := parseValue(dec, depth+1)
				if err != nil {
					return jvalue{}, err
				}
				v.arr = append(v.arr, e)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return jvalue{}, err
			}
			return v, nil
		case '{':
			v := jvalue{kind: jObject}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return jvalue{}, err
				}
				key, ok := kt.(string)
				if !ok {
					return jvalue{}, fmt.Errorf("object key is %T, not a string", kt)
				}
				e, err := parseValue(dec, depth+1)
				if err != nil {
					return jvalue{}, err
				}
				v.obj = append(v.obj, jmember{key: key, val: e})
			}
			if _, err := dec.Token(); err != nil { // '}'
				return jvalue{}, err
			}
			slices.SortFunc(v.obj, func(a, b jmember) int { return strings.Compare(a.key, b.key) })
			for i := 1; i < len(v.obj); i++ {
				if v.obj[i].key == v.obj[i-1].key {
					return jvalue{}, fmt.Errorf("duplicate object key %q", v.obj[i].key)
				}
			}
			return v, nil
		}
	}
	return jvalue{}, fmt.Errorf("unexpected JSON token %v", tok)
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
