package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/internal/testclock"
	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

const bobID = "spiffe://example.org/user/bob"

// TestBreakglassBurstIsBounded: the red team's 30 break-glass requests in a
// burst from one person. The human rate limit of the etcd example (burst 20)
// applies to the control API, and of the 20 it lets through only
// max_pending_per_person become grants: 3 audit records of requests and 3
// webhook notifications, not 30. Revoking and health checks still work with
// the bucket empty; another person is unaffected.
func TestBreakglassBurstIsBounded(t *testing.T) {
	var hooks atomic.Int32
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Header.Get("X-Ztp-Event") == "requested" {
			hooks.Add(1)
		}
	}))
	t.Cleanup(rcv.Close)
	clk := testclock.New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	e := proxytest.Start(t, proxytest.Options{
		Proxy: func(o *proxy.Options) { o.Now = clk.Now },
		Extra: `breakglass:
  max_duration: 1h
  approvals_required: 1
  approver_groups: [sre-leads]
  notify_webhook: ` + rcv.URL + `
rate_limits:
  - match: { kind: human }
    rps: 5
    burst: 20
`,
	})
	alice := ztpv1.NewBreakGlassClient(e.Conn(t, proxytest.AliceID))

	var mu sync.Mutex
	var granted []string
	var pendingRefusals, rateRefusals int
	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() {
			var tr metadata.MD
			g, err := alice.RequestGrant(proxytest.Ctx(t), &ztpv1.RequestGrantRequest{Reason: "INC-9 flood"}, grpc.Trailer(&tr))
			mu.Lock()
			defer mu.Unlock()
			st := status.Convert(err)
			switch {
			case err == nil:
				granted = append(granted, g.GetId())
			case st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "waiting for approval"):
				pendingRefusals++
			case st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "rate limit rate_limits[0] for "+proxytest.AliceID):
				rateRefusals++
				if len(tr.Get("grpc-retry-pushback-ms")) != 1 {
					t.Errorf("rate-limited RequestGrant without the pushback trailer: %v", tr)
				}
			default:
				t.Errorf("RequestGrant = %v", err)
			}
		})
	}
	wg.Wait()
	if len(granted) != 3 || pendingRefusals != 17 || rateRefusals != 10 {
		t.Fatalf("30 requests: %d granted, %d refused as too many pending, %d rate-limited; want 3, 17, 10", len(granted), pendingRefusals, rateRefusals)
	}
	_, err := alice.RequestGrant(proxytest.Ctx(t), &ztpv1.RequestGrantRequest{Reason: "one more"})
	proxytest.WantCode(t, "RequestGrant past the burst", err, codes.ResourceExhausted, "rate limit")

	// Her bucket is empty, yet she can end a grant and check health.
	if _, err := alice.RevokeGrant(proxytest.Ctx(t), &ztpv1.GrantAction{Id: granted[0]}); err != nil {
		t.Errorf("RevokeGrant with the caller's bucket empty: %v", err)
	}
	if _, err := healthpb.NewHealthClient(e.Conn(t, proxytest.AliceID)).Check(proxytest.Ctx(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("Health/Check with the caller's bucket empty: %v", err)
	}
	// Another person is unaffected.
	if _, err := ztpv1.NewBreakGlassClient(e.Conn(t, bobID)).RequestGrant(proxytest.Ctx(t), &ztpv1.RequestGrantRequest{Reason: "INC-10"}); err != nil {
		t.Errorf("bob's RequestGrant: %v", err)
	}

	recs := e.Records(t)
	var requested, limited int
	for _, r := range recs {
		switch {
		case r.Type == audit.TypeBreakglass && strings.HasPrefix(r.Detail, "requested") && r.Principal.ID == proxytest.AliceID:
			requested++
		case r.Type == audit.TypeRequest && r.Method == "/ztp.v1.BreakGlass/RequestGrant" && r.Decision == audit.DecisionRatelimited:
			limited++
			if len(r.Reasons) != 1 || !strings.HasPrefix(r.Reasons[0], "rate limit rate_limits[0] for ") {
				t.Errorf("ratelimited record reasons %q", r.Reasons)
			}
		}
	}
	if requested != 3 || limited != 11 {
		t.Errorf("audit: %d requested records of alice, %d ratelimited RequestGrant records; want 3 and 11", requested, limited)
	}
	e.Stop(t) // drains the webhook queue
	if n := hooks.Load(); n != 4 {
		t.Errorf("webhook got %d requested events; want 4 (alice's 3, bob's 1)", n)
	}
}
