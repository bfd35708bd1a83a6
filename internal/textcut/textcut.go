// Package textcut cuts caller-sized text — header values, method names, policy
// reasons — the one way records, summaries and status messages show it: at
// most n bytes, on a UTF-8 boundary, ending in Mark so that nobody takes the
// rest for the whole.
package textcut

import "unicode/utf8"

// Mark ends a cut string.
const Mark = "…[truncated]"

// Cut returns s when it has at most n bytes; otherwise its first n bytes or
// fewer (never splitting a UTF-8 sequence) followed by Mark.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + Mark
}
