package proxy_test

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestUnknownControlMethodsNeverForwarded: methods under the proxy's own services
// that the control API does not serve are refused, never handed to an upstream,
// even by an authorized caller.
func TestUnknownControlMethodsNeverForwarded(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{Audit: "  readers: [auditors]\n"})
	conn := e.Conn(t, "spiffe://example.org/auditor/ann")
	for _, m := range []string{"/ztp.v1.Audit/Anything", "/grpc.health.v1.Health/Anything", "/ztp.v1.Nope/Do"} {
		err := conn.Invoke(proxytest.Ctx(t), m, &testgrpc.Empty{}, &testgrpc.Empty{})
		proxytest.WantCode(t, "Invoke("+m+")", err, codes.Unimplemented, "unknown control method")
	}
	if n := e.Backend.Calls.Load(); n != 0 {
		t.Errorf("backend handled %d calls, want 0", n)
	}
	refused := 0
	for _, r := range e.Records(t) {
		if r.Type == "request" && r.Decision == "deny" && len(r.Reasons) == 1 && r.Reasons[0] == "unknown control method" {
			refused++
		}
	}
	if refused != 3 {
		t.Errorf("audited %d refusals of unknown control methods, want 3", refused)
	}
}

// fakeClock is a settable clock for the pipeline.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestExpiredCredentialsEndStreams: a stream outliving the client certificate
// that opened it gets its next message refused as unauthenticated.
func TestExpiredCredentialsEndStreams(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	e := proxytest.Start(t, proxytest.Options{Proxy: func(o *proxy.Options) { o.Now = clock.Now }})
	s, err := e.Dial(t, proxytest.DeployerID).FullDuplexCall(proxytest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Send(&testgrpc.StreamingOutputCallRequest{})
	if _, err := s.Recv(); err != nil {
		t.Fatalf("first message: %v", err)
	}
	clock.Add(48 * time.Hour) // proxytest certificates are valid for 24h
	s.Send(&testgrpc.StreamingOutputCallRequest{})
	_, err = s.Recv()
	proxytest.WantCode(t, "message after the certificate expired", err, codes.Unauthenticated, "credentials expired")
	if n := e.Backend.Messages.Load(); n != 1 {
		t.Errorf("backend received %d messages, want 1", n)
	}
}
