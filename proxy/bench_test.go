package proxy_test

import (
	"context"
	"fmt"
	"github.com/ztp-dev/ztp/proxy/proxytest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// BenchmarkOverhead measures unary calls through the full pipeline (mTLS,
// decode, OPA, durable audit, forward) against calling the same backend
// directly, interleaved in rounds within one run so that both see the same
// machine state. It reports per-call latency of each path and the throughput
// ratio proxied/direct.
//
//	go test -run '^$' -bench Overhead -benchtime 3000x ./proxy/
func BenchmarkOverhead(b *testing.B) {
	for _, conc := range []int{1, 64} {
		b.Run(fmt.Sprintf("c=%d", conc), func(b *testing.B) {
			e := proxytest.Start(b, proxytest.Options{})
			direct := dialDirect(b, e.Backend.Addr)
			proxied := e.Dial(b, proxytest.DeployerID)
			req := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("benchmark payload of a typical admin request")}}
			// Warm both paths (connections, caches).
			run(b, direct, req, conc, 200)
			run(b, proxied, req, conc, 200)

			const rounds = 10
			per := max(b.N/rounds, conc)
			var dDur, pDur time.Duration
			var dLat, pLat []time.Duration
			b.ResetTimer()
			for range rounds {
				d, l := run(b, direct, req, conc, per)
				dDur += d
				dLat = append(dLat, l...)
				d, l = run(b, proxied, req, conc, per)
				pDur += d
				pLat = append(pLat, l...)
			}
			b.StopTimer()
			n := float64(per * rounds)
			b.ReportMetric(n/dDur.Seconds(), "direct-req/s")
			b.ReportMetric(n/pDur.Seconds(), "proxy-req/s")
			b.ReportMetric(dDur.Seconds()/pDur.Seconds(), "ratio")
			b.ReportMetric(float64(pct(pLat, 50)-pct(dLat, 50))/1e3, "added-p50-µs")
			b.ReportMetric(float64(pct(pLat, 99))/1e3, "proxy-p99-µs")
			// Where the proxied time goes, from the proxy's own histograms.
			mfs, err := e.Server.Metrics().Registry.Gather()
			if err != nil {
				b.Fatal(err)
			}
			for _, mf := range mfs {
				switch mf.GetName() {
				case "ztp_audit_append_seconds", "ztp_policy_eval_seconds":
					h := mf.GetMetric()[0].GetHistogram()
					name := strings.TrimSuffix(strings.TrimPrefix(mf.GetName(), "ztp_"), "_seconds")
					b.ReportMetric(h.GetSampleSum()/float64(h.GetSampleCount())*1e6, name+"-avg-µs")
				}
			}
		})
	}
}

func dialDirect(b testing.TB, addr string) testgrpc.TestServiceClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

// run makes n calls with conc workers and returns the wall time and each call's latency.
func run(b testing.TB, c testgrpc.TestServiceClient, req *testgrpc.SimpleRequest, conc, n int) (time.Duration, []time.Duration) {
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	var next sync.Mutex
	i := 0
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				k := i
				i++
				next.Unlock()
				if k >= n {
					return
				}
				t0 := time.Now()
				if _, err := c.UnaryCall(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
				lat[k] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	return time.Since(start), lat
}

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}
