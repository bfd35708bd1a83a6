package audit

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// BenchmarkAppend measures durable appends per second with c concurrent
// callers (c=64 is spread as SetParallelism(64/GOMAXPROCS)).
func BenchmarkAppend(b *testing.B) {
	for _, c := range []int{1, 64} {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			s, _ := openTestStore(b, Options{})
			ctx := context.Background()
			b.ReportAllocs()
			if c == 1 {
				for b.Loop() {
					if _, err := s.Append(ctx, requestRecord(1)); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism(max(1, c/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := s.Append(ctx, requestRecord(1)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
	}
}

// BenchmarkEncode measures the CPU cost of one record without I/O: the
// caller's share (validation, canonical request, redaction) and the
// writer's share (sealing and hashing).
func BenchmarkEncode(b *testing.B) {
	redact, err := parseRedactPaths([]string{"password", "*.secret"})
	if err != nil {
		b.Fatal(err)
	}
	r := requestRecord(1)
	now := func() time.Time { return time.Unix(1, 0) }
	b.ReportAllocs()
	for b.Loop() {
		e, err := newEntry(r, redact)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := e.seal(1, [32]byte{}, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	const n = 1000
	s, _ := openTestStore(b, Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := s.Append(ctx, requestRecord(1)); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "records/s")
}
