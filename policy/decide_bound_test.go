package policy

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestDecideBoundsReasons: reasons quoting a request of any size, or
// naming each of thousands of elements, leave Decide bounded, cut on a
// UTF-8 boundary and saying how many were left out; short ones are kept as
// they are.
func TestDecideBoundsReasons(t *testing.T) {
	long := "a " + strings.Repeat("é", 3000) // sorts first; 2 bytes a rune: a cut may fall inside one
	many := make([]string, 5000)
	for i := range many {
		many[i] = fmt.Sprintf("op %05d is not allowed", i)
	}
	for _, tc := range []struct {
		name string
		res  Result
	}{
		{"deny", Result{Deny: append([]string{long}, many...)}},
		{"forbid", Result{Forbid: append([]string{long}, many...)}},
	} {
		v := Decide(tc.res, nil, Enforce, "")
		if len(v.Reasons) != maxReasons+1 || v.Reasons[maxReasons] != fmt.Sprintf("… and %d more reasons", 5001-maxReasons) {
			t.Errorf("%s: %d reasons, last %q; want %d and a count of the rest", tc.name, len(v.Reasons), v.Reasons[len(v.Reasons)-1], maxReasons+1)
		}
		if v.Reasons[1] != "op 00000 is not allowed" {
			t.Errorf("%s: second reason %q, want the sorted second", tc.name, v.Reasons[1])
		}
		cut := v.Reasons[0]
		if !strings.HasSuffix(cut, reasonCutMark) || len(cut) > maxReasonBytes+len(reasonCutMark) || !utf8.ValidString(cut) {
			t.Errorf("%s: the long reason became %d bytes (valid UTF-8: %v), want it cut to %d and marked", tc.name, len(cut), utf8.ValidString(cut), maxReasonBytes)
		}
	}
	short := Result{Deny: []string{"b", "a"}}
	if v := Decide(short, nil, Enforce, ""); strings.Join(v.Reasons, ",") != "a,b" {
		t.Errorf("short reasons = %q, want them sorted and whole", v.Reasons)
	}
}
