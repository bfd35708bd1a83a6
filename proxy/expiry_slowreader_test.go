package proxy_test

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestExpiryEndsStreamOfClientThatStopsReading: a client that stops reading
// a server stream fills its flow-control window, and the proxy's send to it
// blocks. The credential's expiry must still end the call on the proxy (its
// handler returns, the outcome is audited, the stream slot is freed) rather
// than whenever the client decides to read again.
func TestExpiryEndsStreamOfClientThatStopsReading(t *testing.T) {
	e, clk := expiryEnv(t, proxytest.Options{})
	notAfter := clk.Now().Add(10 * time.Minute)
	w := openWatch(t, e, fixedWindowConn(t, e, proxytest.DeployerID, notAfter))

	// The client stops reading; the backend keeps producing events.
	stop := make(chan struct{})
	fed := make(chan struct{})
	var sent atomic.Int64
	go func() {
		defer close(fed)
		ev := bytes.Repeat([]byte("x"), 32<<10)
		for {
			select {
			case e.Backend.Events <- ev:
				sent.Add(1)
			case <-stop:
				return
			}
		}
	}()
	defer func() { close(stop); <-fed }()
	// Let the proxy's send block: wait until the backend takes no more
	// events (every window between it, the proxy and the client is full).
	waitStalled(t, &sent)

	clk.Advance(10*time.Minute + time.Nanosecond)
	want := "credentials expired at " + notAfter.Format(time.RFC3339)
	ended := waitRecord(t, e, func(r *audit.Record) bool {
		return r.Type == "outcome" && r.Code == "UNAUTHENTICATED" && strings.Contains(r.Detail, want)
	})
	if ended == nil {
		t.Fatal("the call of a client that stopped reading was not ended at its credential's expiry (no outcome record)")
	}
	// When the client reads again it gets what was sent before the expiry,
	// then the status.
	for {
		if _, err := w.Recv(); err != nil {
			proxytest.WantCode(t, "Recv after the client read again", err, codes.Unauthenticated, want)
			break
		}
	}
}

// waitStalled waits until n stops growing for a while.
func waitStalled(t *testing.T, n *atomic.Int64) {
	t.Helper()
	ctx := proxytest.Ctx(t)
	last := int64(-1)
	for {
		select {
		case <-ctx.Done():
			t.Fatal("the backend never stalled")
		case <-time.After(300 * time.Millisecond):
		}
		cur := n.Load()
		if cur == last {
			return
		}
		last = cur
	}
}

// TestExpiryEndsExportFollowOfClientThatStopsReading: the same for the
// control API: an audit follower that stops reading while records keep
// coming is ended at its credential's expiry.
func TestExpiryEndsExportFollowOfClientThatStopsReading(t *testing.T) {
	e, clk := expiryEnv(t, proxytest.Options{Audit: "  readers: [auditors]\n"})
	notAfter := clk.Now().Add(5 * time.Minute)
	conn := fixedWindowConn(t, e, "spiffe://example.org/auditor/ann", notAfter)
	// No deadline of the client's own: only the proxy may end the call.
	fctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follow, err := ztpv1.NewAuditClient(conn).Export(fctx, &ztpv1.ExportRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := follow.Recv(); err != nil {
		t.Fatalf("first chunk: %v", err)
	}
	// Far more records than the follower's window holds; it reads none.
	client := testgrpc.NewTestServiceClient(e.Conn(t, proxytest.DeployerID))
	big := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: bytes.Repeat([]byte("r"), 2<<10)}}
	for range 200 {
		if _, err := client.UnaryCall(proxytest.Ctx(t), big); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(5*time.Minute + time.Second)
	want := "credentials expired at " + notAfter.Format(time.RFC3339)
	if waitRecord(t, e, func(r *audit.Record) bool {
		return r.Type == "outcome" && r.Method == "/ztp.v1.Audit/Export" && r.Code == "UNAUTHENTICATED" && strings.Contains(r.Detail, want)
	}) == nil {
		t.Fatal("the audit follower that stopped reading was not ended at its credential's expiry (no outcome record)")
	}
}

// fixedWindowConn is shortLived with a fixed flow-control window (no BDP
// growth): the proxy's sends block once the client leaves it full.
func fixedWindowConn(t *testing.T, e *proxytest.Env, id string, notAfter time.Time) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(credentials.NewTLS(shortLivedTLS(t, e, id, notAfter))),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
