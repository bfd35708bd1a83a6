package proxy

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzBoundValues: what is kept of a header is a prefix of its values, at
// most maxHeaderBytes of them plus one mark, never a split UTF-8 sequence.
func FuzzBoundValues(f *testing.F) {
	f.Add("r-1", strings.Repeat("é", 600), "r-3")
	f.Add(strings.Repeat("a", 1023), "€€", "")
	f.Add("", "", strings.Repeat("x", 5000))
	f.Fuzz(func(t *testing.T, a, b, c string) {
		in := []string{a, b, c}
		out := boundValues(in)
		n := 0
		for i, v := range out {
			if last := i == len(out)-1; last && len(out) <= len(in) && v != in[i] {
				cutv, ok := strings.CutSuffix(v, truncatedMark)
				if !ok || !strings.HasPrefix(in[i], cutv) {
					t.Fatalf("value %d = %q, want a marked prefix of %q", i, v, in[i])
				}
				if utf8.ValidString(in[i]) && !utf8.ValidString(cutv) {
					t.Fatalf("value %d cut inside a UTF-8 sequence: %q", i, cutv)
				}
				n += len(cutv)
				continue
			}
			if v != in[i] {
				t.Fatalf("value %d = %q, want %q unchanged", i, v, in[i])
			}
			n += len(v)
		}
		if n > maxHeaderBytes {
			t.Fatalf("kept %d bytes of values, want at most %d", n, maxHeaderBytes)
		}
		if len(out) < len(in) && !strings.HasSuffix(out[len(out)-1], truncatedMark) {
			t.Fatalf("values dropped without a mark: %q", out)
		}
	})
}

// BenchmarkMessageDigest is what recording request_bytes and request_sha256
// costs per message: a typical etcd request and the largest message.
func BenchmarkMessageDigest(b *testing.B) {
	for _, size := range []int{100, 4 << 20} {
		f := &frame{Data: make([]byte, size)}
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				messageDigest(f)
			}
		})
	}
}
