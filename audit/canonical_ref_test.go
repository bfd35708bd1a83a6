package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

// parseJSONReference is the json.Decoder.Token parser that parseJSON
// replaced, kept as the reference it is fuzzed against. It parses exactly one JSON value. Numbers keep their literal text;
// strings are unescaped (invalid UTF-8 becomes U+FFFD, as encoding/json
// does); duplicate object keys are an error because they have no single
// canonical form.
func parseJSONReference(b []byte) (jvalue, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := parseValueReference(dec, 0)
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

func parseValueReference(dec *json.Decoder, depth int) (jvalue, error) {
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
				e, err := parseValueReference(dec, depth+1)
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
				e, err := parseValueReference(dec, depth+1)
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

// FuzzParseJSONReference holds parseJSON to the json.Decoder-based parser
// it replaced: both accept the same inputs and produce the same canonical
// bytes.
func FuzzParseJSONReference(f *testing.F) {
	for _, s := range []string{
		`{"b":1,"a":[1.0,"x"]}`, `[]`, `"\u2028"`, `{"a":{"a":{}}}`, `1e400`, `{"a":1,"a":2}`, "\"\xff\"",
		`"\ud83d\ude00"`, `"\ud83d\u0041"`, `"\ude00\ud83d"`, `"\ud83d"`, `"\ud83d\ud83d\ude00"`, `-0.5e+10`, `01`, `1.`, `-`,
		" [ true , false , null ] ", `{"a" 1}`, `{"a":1,}`, `[1,]`, `"\/\b\f\n\r\t\"\\"`, "\"\xed\xa0\x80\"", `"\u00e9"`, `{}x`, `tru`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, gerr := parseJSON(in)
		want, werr := parseJSONReference(in)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("parseJSON(%q) error %v, reference error %v", in, gerr, werr)
		}
		if gerr != nil {
			return
		}
		g, w := appendCanonical(nil, &got), appendCanonical(nil, &want)
		if !bytes.Equal(g, w) {
			t.Fatalf("parseJSON(%q) canonicalizes to %q, reference to %q", in, g, w)
		}
	})
}

// FuzzCheckCanonical holds checkCanonical to its definition: b is
// canonical when parsing and re-encoding it gives b back.
func FuzzCheckCanonical(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"b":[true,false,null,"x"]}`, `{"b":1,"a":2}`, `{"a":1,"a":2}`, `{"a":{"c":{},"d":[]}}`, `"\u2028"`, "\"\u2028\"",
		`"\u001f"`, `"\u001F"`, `"\u0008"`, `"\b"`, `"\/"`, "\"\xff\"", "\"\xef\xbf\xbd\"", `{"\n":1,"\u0001":2}`, `{"\u0001":1,"\n":2}`,
		`{"a":1 }`, ` {}`, `-0.0e-0`, `01`, `{"hash":"x","seq":1}`, `[[[]]]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := checkCanonical(b, nil)
		v, perr := parseJSON(b)
		want := perr == nil && bytes.Equal(appendCanonical(nil, &v), b)
		if (err == nil) != want {
			t.Fatalf("checkCanonical(%q) = %v; parse+re-encode says canonical=%v (parse error %v)", b, err, want, perr)
		}
	})
}
