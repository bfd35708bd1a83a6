package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFieldKeysSorted(t *testing.T) {
	if !slices.IsSorted(fieldKeys[:]) {
		t.Fatalf("fieldKeys not sorted: %q", fieldKeys)
	}
	// The export recipe relies on every key before "hash" holding a string
	// or number, so that the first `"hash":"` is the top-level member.
	for _, k := range fieldKeys[:fHash] {
		switch k {
		case "breakglass_grant", "bytes_in", "bytes_out", "code", "decision", "detail", "duration_ms":
		default:
			t.Errorf("key %q sorts before \"hash\"; check that its value is never an object or array, then add it here", k)
		}
	}
}

// encodingJSON is the reference: encoding/json with HTML escaping off.
func encodingJSON(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatalf("encoding/json Encode(%q): %v", s, err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// perByteValid replaces each invalid UTF-8 byte by U+FFFD, as
// encoding/json's decoder does.
func perByteValid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func TestAppendString(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "abc", `"abc"`},
		{"html is not escaped", "<a href='x'>&</a>", `"<a href='x'>&</a>"`},
		{"quote and backslash", `"\`, `"\"\\"`},
		{"short escapes", "\b\f\n\r\t", `"\b\f\n\r\t"`},
		{"other controls", "\x00\x01\x1f\x7f", `"\u0000\u0001\u001f` + "\x7f" + `"`},
		{"line separators", "\u2028\u2029", `"\u2028\u2029"`},
		{"non-ASCII literal", "héllo 世界 🎉", `"héllo 世界 🎉"`},
		{"invalid UTF-8 becomes literal U+FFFD", "a\xffb\xc3", "\"a\uFFFDb\uFFFD\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(appendString(nil, tc.in)); got != tc.want {
				t.Errorf("appendString(%q) = %s, want %s", tc.in, got, tc.want)
			}
			if ref := encodingJSON(t, perByteValid(tc.in)); string(appendString(nil, tc.in)) != ref {
				t.Errorf("appendString(%q) = %s, encoding/json gives %s", tc.in, appendString(nil, tc.in), ref)
			}
		})
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "abc", "<>&", "\u2028", "\x00\xff", `"\`, "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := appendString(nil, s)
		if want := encodingJSON(t, perByteValid(s)); string(got) != want {
			t.Fatalf("appendString(%q) = %s, encoding/json gives %s", s, got, want)
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil || back != perByteValid(s) {
			t.Fatalf("json.Unmarshal(%s) = %q, %v; want %q", got, back, err, perByteValid(s))
		}
	})
}

func TestCanonicalJSON(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"sorted keys at every level", `{"b":1,"a":{"d":[{"z":1,"y":2}],"c":null}}`, `{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}`},
		{"whitespace removed", " {\n\t\"a\" : [ 1 , 2 ] } ", `{"a":[1,2]}`},
		{"number text preserved", `[1.0,1e2,-0,1E+02,123456789012345678901234567890,0.1]`, `[1.0,1e2,-0,1E+02,123456789012345678901234567890,0.1]`},
		{"escapes normalized", `["\u0041\/\u00e9","\u003c"]`, `["A/é","<"]`},
		{"sort by code point", `{"é":1,"z":2,"Z":3,"😀":4,"ｚ":5}`, `{"Z":3,"z":2,"é":1,"ｚ":5,"😀":4}`},
		{"literals", `[true,false,null]`, `[true,false,null]`},
		{"empty containers", `{"a":{},"b":[]}`, `{"a":{},"b":[]}`},
		{"scalar", `"x"`, `"x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := canonicalJSON([]byte(tc.in), nil)
			if err != nil || string(got) != tc.want {
				t.Fatalf("canonicalJSON(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestCanonicalJSONRejects(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ``},
		{"duplicate key", `{"a":1,"a":2}`},
		{"nested duplicate key", `{"x":{"a":1,"a":1}}`},
		{"trailing value", `{} {}`},
		{"trailing garbage", `{}x`},
		{"truncated", `{"a":`},
		{"bad number", `[01]`},
		{"single quotes", `{'a':1}`},
		{"too deep", strings.Repeat("[", maxDepth+2) + strings.Repeat("]", maxDepth+2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := canonicalJSON([]byte(tc.in), nil); err == nil {
				t.Fatalf("canonicalJSON(%.40q) = %s, nil; want an error", tc.in, got)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	const req = `{"user":"alice","password":"hunter2","db":{"secret":"s1","name":"prod"},` +
		`"items":[{"secret":"s2","k":1},{"k":2}],"a":{"b":{"c":{"deep":true},"d":1}},"n":5}`
	for _, tc := range []struct {
		name     string
		patterns []string
		want     string
	}{
		{"none", nil,
			`{"a":{"b":{"c":{"deep":true},"d":1}},"db":{"name":"prod","secret":"s1"},"items":[{"k":1,"secret":"s2"},{"k":2}],"n":5,"password":"hunter2","user":"alice"}`},
		{"top-level key", []string{"password"},
			`{"a":{"b":{"c":{"deep":true},"d":1}},"db":{"name":"prod","secret":"s1"},"items":[{"k":1,"secret":"s2"},{"k":2}],"n":5,"password":"[redacted]","user":"alice"}`},
		{"wildcard one level down, arrays transparent", []string{"*.secret"},
			`{"a":{"b":{"c":{"deep":true},"d":1}},"db":{"name":"prod","secret":"[redacted]"},"items":[{"k":1,"secret":"[redacted]"},{"k":2}],"n":5,"password":"hunter2","user":"alice"}`},
		{"object value replaced whole", []string{"a.b.c"},
			`{"a":{"b":{"c":"[redacted]","d":1}},"db":{"name":"prod","secret":"s1"},"items":[{"k":1,"secret":"s2"},{"k":2}],"n":5,"password":"hunter2","user":"alice"}`},
		{"number replaced", []string{"n", "items.k"},
			`{"a":{"b":{"c":{"deep":true},"d":1}},"db":{"name":"prod","secret":"s1"},"items":[{"k":"[redacted]","secret":"s2"},{"k":"[redacted]"}],"n":"[redacted]","password":"hunter2","user":"alice"}`},
		{"absent path is a no-op", []string{"nope", "a.x.y", "user.deeper"},
			`{"a":{"b":{"c":{"deep":true},"d":1}},"db":{"name":"prod","secret":"s1"},"items":[{"k":1,"secret":"s2"},{"k":2}],"n":5,"password":"hunter2","user":"alice"}`},
		{"top-level wildcard", []string{"*"},
			`{"a":"[redacted]","db":"[redacted]","items":"[redacted]","n":"[redacted]","password":"[redacted]","user":"[redacted]"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			paths, err := parseRedactPaths(tc.patterns)
			if err != nil {
				t.Fatalf("parseRedactPaths(%q) = %v", tc.patterns, err)
			}
			got, err := canonicalJSON([]byte(req), paths)
			if err != nil || string(got) != tc.want {
				t.Fatalf("redact %q:\n got %s, %v\nwant %s", tc.patterns, got, err, tc.want)
			}
		})
	}
}

func TestRedactAppliesToCopyBeforeHashing(t *testing.T) {
	s, _ := openTestStore(t, Options{Redact: []string{"password", "*.secret"}, Now: fixedClock()})
	orig := `{"password":"hunter2","cfg":{"secret":"s"},"user":"alice"}`
	r := &Record{Type: TypeRequest, Request: json.RawMessage(orig)}
	seq := mustAppend(t, s, r)
	if string(r.Request) != orig {
		t.Errorf("caller's Request changed to %s, want %s", r.Request, orig)
	}
	var got *Record
	if err := s.Scan(testCtx(t), seq, func(rec *Record) error { got = rec; return errors.New("stop") }); err == nil || got == nil {
		t.Fatalf("Scan did not return the record")
	}
	const want = `{"cfg":{"secret":"[redacted]"},"password":"[redacted]","user":"alice"}`
	if string(got.Request) != want {
		t.Errorf("stored Request = %s, want %s", got.Request, want)
	}
	if got.Hash != r.Hash {
		t.Errorf("stored hash %s, Append reported %s", got.Hash, r.Hash)
	}
	if strings.Contains(string(storeLines(t, s)[0]), "hunter2") {
		t.Errorf("secret reached the stored line")
	}
}

func TestRedactInvalidPatterns(t *testing.T) {
	for _, p := range []string{"", ".a", "a.", "a..b", "pass*", "**", "a.*b", "pass word", "tab\tkey"} {
		t.Run(p, func(t *testing.T) {
			_, err := Open(t.TempDir()+"/audit.db", Options{Redact: []string{"ok", p}})
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), strings.ReplaceAll(p, "\t", `\t`)) {
				t.Fatalf("Open with Redact %q = %v; want ErrInvalidOptions naming the pattern", p, err)
			}
		})
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[1.0,"x"]}`, `[]`, `"\u2028"`, `{"a":{"a":{}}}`, `1e400`, `{"a":1,"a":2}`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		paths, _ := parseRedactPaths([]string{"*.secret"})
		c, err := canonicalJSON(in, nil)
		if err != nil {
			if json.Valid(in) && !hasDuplicateKeys(in) && !tooDeep(in) {
				t.Fatalf("canonicalJSON(%q) = %v, but it is valid JSON", in, err)
			}
			return
		}
		if !json.Valid(c) {
			t.Fatalf("canonicalJSON(%q) = %q: not valid JSON", in, c)
		}
		again, err := canonicalJSON(c, nil)
		if err != nil || !bytes.Equal(again, c) {
			t.Fatalf("not a fixed point: canonicalJSON(%q) = %q, %v", c, again, err)
		}
		var a, b any
		da, db := json.NewDecoder(bytes.NewReader(in)), json.NewDecoder(bytes.NewReader(c))
		da.UseNumber()
		db.UseNumber()
		if da.Decode(&a) != nil || db.Decode(&b) != nil || !jsonEqual(a, b) {
			t.Fatalf("canonicalJSON(%q) = %q changes the value", in, c)
		}
		if _, err := canonicalJSON(in, paths); err != nil {
			t.Fatalf("redaction made canonicalJSON(%q) fail: %v", in, err)
		}
	})
}

func jsonEqual(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			if w, ok := b[k]; !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !jsonEqual(a[i], b[i]) {
				return false
			}
		}
		return true
	default:
		return a == b
	}
}

// hasDuplicateKeys reports whether any object in the valid JSON in has a
// repeated key (after unescaping).
func hasDuplicateKeys(in []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(in))
	type frame struct {
		obj   bool
		keys  map[string]bool
		isKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1].obj {
				stack[len(stack)-1].isKey = true
			}
			continue
		}
		if top != nil && top.obj && top.isKey {
			k := tok.(string)
			if top.keys[k] {
				return true
			}
			top.keys[k] = true
			top.isKey = false
			continue
		}
		if d, ok := tok.(json.Delim); ok {
			stack = append(stack, &frame{obj: d == '{', keys: map[string]bool{}, isKey: true})
			continue
		}
		if top != nil && top.obj {
			top.isKey = true
		}
	}
}

func tooDeep(in []byte) bool {
	depth, maxSeen := 0, 0
	inStr, esc := false, false
	for _, c := range in {
		switch {
		case esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case c == '"':
			inStr = !inStr
		case !inStr && (c == '[' || c == '{'):
			depth++
			maxSeen = max(maxSeen, depth)
		case !inStr && (c == ']' || c == '}'):
			depth--
		}
	}
	return maxSeen > maxDepth
}
