package textcut

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCut(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdef", 3, "abc" + Mark},
		{"aé", 2, "a" + Mark}, // é is two bytes: not split
		{"é", 0, Mark},
	} {
		if got := Cut(tc.s, tc.n); got != tc.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

func FuzzCut(f *testing.F) {
	f.Add("héllo wörld", 4)
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || !utf8.ValidString(s) {
			return
		}
		got := Cut(s, n)
		if len(s) <= n {
			if got != s {
				t.Fatalf("Cut(%q, %d) = %q, want it unchanged", s, n, got)
			}
			return
		}
		kept, ok := strings.CutSuffix(got, Mark)
		if !ok || len(kept) > n || !strings.HasPrefix(s, kept) || !utf8.ValidString(kept) {
			t.Fatalf("Cut(%q, %d) = %q", s, n, got)
		}
	})
}
