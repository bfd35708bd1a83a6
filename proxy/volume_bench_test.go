package proxy_test

import (
	"errors"
	"io"
	"testing"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// BenchmarkStreamResponses measures the proxy's cost per response message of
// a server-streaming call (1000 messages of 100 bytes a call): with no
// response-volume rule, and with a response_bytes rule charging every message
// (a bucket too large to run dry). The difference between the two is the
// charge; the first, compared with the same benchmark on a build without
// response-volume rules, is the cost of the feature when it is not configured.
//
//	go test -run '^$' -bench StreamResponses -benchtime 20x ./proxy/
func BenchmarkStreamResponses(b *testing.B) {
	for _, bc := range []struct{ name, extra string }{
		{"no-rule", ""},
		{"response_bytes", `rate_limits:
  - match: { method: "` + streamOutMethod + `" }
    unit: response_bytes
    rps: 1e12
    burst: 1000000000000
`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := proxytest.Start(b, proxytest.Options{Extra: bc.extra})
			c := e.Dial(b, proxytest.DeployerID)
			req := &testgrpc.StreamingOutputCallRequest{}
			for range 1000 {
				req.ResponseParameters = append(req.ResponseParameters, &testgrpc.ResponseParameters{Size: 100})
			}
			b.ResetTimer()
			for range b.N {
				st, err := c.StreamingOutputCall(proxytest.Ctx(b), req)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					if _, err := st.Recv(); err != nil {
						if !errors.Is(err, io.EOF) {
							b.Fatal(err)
						}
						break
					}
					n++
				}
				if n != 1000 {
					b.Fatalf("%d messages", n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/msg")
		})
	}
}
