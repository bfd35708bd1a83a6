package proxy_test

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/ztp-dev/ztp/internal/grpcfwd"
	"github.com/ztp-dev/ztp/internal/testclock"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestCallRefusedByGRPCReleasesItsTimer: a unary control call whose request
// gRPC cannot decode ends before any interceptor runs. Its first-message
// timer must not outlive it: otherwise every such call, which any client
// that completes a TLS handshake can send as fast as it likes, holds a timer
// and its call's state for limits.first_message_timeout after it ended.
func TestCallRefusedByGRPCReleasesItsTimer(t *testing.T) {
	clk := testclock.New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	e := proxytest.Start(t, proxytest.Options{Proxy: withTimers(clk)})
	conn := e.Conn(t, proxytest.AliceID)
	const n = 20
	for range n {
		var out grpcfwd.Frame
		err := conn.Invoke(proxytest.Ctx(t), "/ztp.v1.Policy/Version", &grpcfwd.Frame{Data: []byte{0xff, 0xff, 0xff}}, &out, grpc.ForceCodecV2(grpcfwd.Codec{}))
		proxytest.WantCode(t, "Version with an undecodable request", err, codes.Internal, "unmarshal")
	}
	waitFor(t, 20*time.Second, func() bool { return clk.Pending() == 0 })
}
