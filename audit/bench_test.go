package audit

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
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
		e, err := newEntry(r, redact, 0)
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

// BenchmarkLog1M measures reading a log of a million records (~400 bytes
// each, appended durably by 64 concurrent writers first, which takes a
// while): export (all, and filtered), export through the gRPC service, and
// verification, in records/s, with the largest live heap seen during the
// read as a check that memory stays bounded.
//
//	go test -run '^$' -bench Log1M -benchtime 1x ./audit/
func BenchmarkLog1M(b *testing.B) {
	const n = 1_000_000
	s, path := openTestStore(b, Options{})
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for i := w; i < n; i += 64 {
				if _, err := s.Append(ctx, requestRecord(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.Logf("appended %d records in %v (%.0f/s)", n, time.Since(start).Round(time.Millisecond), n/time.Since(start).Seconds())
	s.Close()
	fi, _ := os.Stat(path)
	b.Logf("file: %d MB", fi.Size()>>20)

	read := func(b *testing.B, fn func(count func()) error) {
		var peak uint64
		var ms runtime.MemStats
		runtime.GC()
		count := 0
		b.ReportAllocs()
		for b.Loop() {
			count = 0
			if err := fn(func() {
				count++
				if count%50000 == 0 {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapAlloc)
				}
			}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*count)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	}
	r, err := OpenReader(path, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.Run("export", func(b *testing.B) {
		read(b, func(count func()) error {
			return r.Export(ctx, Filter{}, func(uint64, []byte) error { count(); return nil })
		})
	})
	b.Run("export-filtered", func(b *testing.B) {
		f := Filter{Method: "/etcdserverpb.KV/*", Decision: DecisionAllow, Since: time.Unix(0, 0)}
		read(b, func(count func()) error {
			return r.Export(ctx, f, func(uint64, []byte) error { count(); return nil })
		})
	})
	b.Run("verify", func(b *testing.B) {
		read(b, func(count func()) error {
			res, err := r.Verify(ctx)
			for range res.Records {
				count()
			}
			return err
		})
	})
	r.Close()
	s2, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s2.Close()
	b.Run("export-grpc", func(b *testing.B) {
		c := serve(b, s2)
		read(b, func(count func()) error {
			stream, err := c.Export(ctx, &ztpv1.ExportRequest{})
			if err != nil {
				return err
			}
			for {
				ch, err := stream.Recv()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				for range ch.GetLines() {
					count()
				}
			}
		})
	})
}
