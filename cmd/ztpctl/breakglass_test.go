package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/internal/testclock"
	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

const (
	carolID   = "spiffe://example.org/lead/carol" // human in sre-leads
	erinID    = "spiffe://example.org/lead/erin"  // another lead
	unaryCall = "/grpc.testing.TestService/UnaryCall"
)

// hookLog collects the webhook's POSTs.
type hookLog struct {
	mu     sync.Mutex
	events []string // "event grant-id"
	got    chan struct{}
}

func (h *hookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var e struct {
		Event string `json:"event"`
		Grant struct {
			ID string `json:"id"`
		} `json:"grant"`
	}
	b, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(b, &e)
	h.mu.Lock()
	h.events = append(h.events, e.Event+" "+e.Grant.ID)
	h.mu.Unlock()
	h.got <- struct{}{}
}

// waitFor blocks until the webhook got n POSTs in total.
func (h *hookLog) waitFor(t *testing.T, n int) []string {
	t.Helper()
	for {
		h.mu.Lock()
		got := slices.Clone(h.events)
		h.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-h.got:
		case <-proxytest.Ctx(t).Done():
			t.Fatalf("webhook got %q, want %d events", got, n)
		}
	}
}

// startBreakglassEnv starts a proxy with break-glass on (one approval by
// sre-leads, 1h at most) and a clock the test moves. o.Extra continues the
// breakglass: block.
func startBreakglassEnv(t *testing.T, o proxytest.Options) (*proxytest.Env, *testclock.Clock) {
	t.Helper()
	clock := testclock.New(time.Now().UTC().Truncate(time.Second))
	o.Extra = "breakglass:\n  max_duration: 1h\n  approvals_required: 1\n  approver_groups: [sre-leads]\n" + o.Extra
	o.Proxy = func(po *proxy.Options) { po.Now = clock.Now }
	return proxytest.Start(t, o), clock
}

// grantRecords is what `ztpctl audit export --grant ID` lists: every record
// carrying the grant id, in seq order.
func grantRecords(t *testing.T, env *proxytest.Env, id string) []*audit.Record {
	var out []*audit.Record
	for _, r := range env.Records(t) {
		if r.BreakglassGrant == id {
			out = append(out, r)
		}
	}
	return out
}

func unary(t *testing.T, c testgrpc.TestServiceClient, body string) error {
	t.Helper()
	_, err := c.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte(body)}})
	return err
}

// TestBreakglassEndToEnd: a human denied by policy requests a grant, a lead
// approves it, the call passes (audited with the grant), forbid still holds,
// calls outside the scope are decided as usual, and the grant ends exactly on
// time.
func TestBreakglassEndToEnd(t *testing.T) {
	hooks := &hookLog{got: make(chan struct{}, 64)}
	hookSrv := httptest.NewServer(hooks)
	defer hookSrv.Close()
	env, clock := startBreakglassEnv(t, proxytest.Options{Extra: "  notify_webhook: " + hookSrv.URL + "/ztp\n"})
	alice := env.Dial(t, proxytest.AliceID)

	proxytest.WantCode(t, "UnaryCall before the grant", unary(t, alice, "hello"), codes.PermissionDenied, "ztp: denied")

	_, err := ztpctl(t, env, proxytest.DeployerID, "breakglass", "request", "--reason", "automation wants in")
	if err == nil || !strings.Contains(err.Error(), "PermissionDenied") || !strings.Contains(err.Error(), "only humans may request break-glass") {
		t.Errorf("breakglass request by automation = %v, want PermissionDenied: only humans", err)
	}
	_, err = ztpctl(t, env, proxytest.AliceID, "breakglass", "request", "--reason", "x", "--duration", "2h")
	if err == nil || !strings.Contains(err.Error(), "InvalidArgument") || !strings.Contains(err.Error(), "exceeds breakglass.max_duration 1h0m0s") {
		t.Errorf("breakglass request --duration 2h = %v, want InvalidArgument naming max_duration", err)
	}
	_, err = ztpctl(t, env, proxytest.AliceID, "breakglass", "request", "--ticket", "INC-4711")
	if err == nil || !strings.Contains(err.Error(), "--reason is required") {
		t.Errorf("breakglass request without --reason = %v, want a usage error", err)
	}

	out, err := ztpctl(t, env, proxytest.AliceID, "breakglass", "request",
		"--reason", "INC-4711 backend stuck", "--ticket", "INC-4711", "--duration", "30m", "--scope", "/grpc.testing.TestService/UnaryCall")
	if err != nil {
		t.Fatalf("breakglass request: %v", err)
	}
	id, rest, _ := strings.Cut(out, "\n")
	if !strings.HasPrefix(id, "bg-") || strings.Contains(id, " ") {
		t.Fatalf("breakglass request printed %q; want the grant id alone on the first line", out)
	}
	if !strings.Contains(rest, "pending: 0 of 1 approvals") {
		t.Errorf("breakglass request second line %q, want the pending state", rest)
	}
	proxytest.WantCode(t, "UnaryCall while pending", unary(t, alice, "hello"), codes.PermissionDenied, "ztp: denied")

	_, err = ztpctl(t, env, proxytest.AliceID, "breakglass", "approve", id)
	if err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Errorf("approve by alice (no lead) = %v, want PermissionDenied", err)
	}
	_, err = ztpctl(t, env, proxytest.DeployerID, "breakglass", "approve", id)
	if err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Errorf("approve by automation = %v, want PermissionDenied", err)
	}

	out, err = ztpctl(t, env, carolID, "breakglass", "approve", id, "--comment", "confirmed on the bridge")
	if err != nil {
		t.Fatalf("breakglass approve: %v", err)
	}
	expires := clock.Now().Add(30 * time.Minute).UTC().Format(time.RFC3339)
	if want := id + " active until " + expires + " (30m0s), scope " + unaryCall; strings.TrimSpace(out) != want {
		t.Errorf("breakglass approve printed %q, want %q", out, want)
	}

	// Under the grant: the denied call passes, audited with grant, reason and
	// what the policy alone said.
	clock.Advance(time.Minute)
	if err := unary(t, alice, "hello"); err != nil {
		t.Fatalf("UnaryCall under the grant: %v", err)
	}
	recs := env.Requests(t, unaryCall)
	last := recs[len(recs)-1]
	if last.Decision != "allow" || last.BreakglassGrant != id || last.Justification != "INC-4711 backend stuck" || last.Ticket != "INC-4711" ||
		len(last.Reasons) != 1 || !strings.Contains(last.Reasons[0], "not allowed") {
		t.Errorf("record of the call under the grant: decision %q grant %q justification %q ticket %q reasons %q; want allow under %s with reason, ticket and the policy's verdict",
			last.Decision, last.BreakglassGrant, last.Justification, last.Ticket, last.Reasons, id)
	}
	// A justification the caller sends wins over the grant's reason.
	ctx := metadata.AppendToOutgoingContext(proxytest.Ctx(t), proxy.HeaderJustification, "defrag after restore")
	if _, err := alice.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall with a justification: %v", err)
	}
	recs = env.Requests(t, unaryCall)
	if last := recs[len(recs)-1]; last.Justification != "defrag after restore" || last.BreakglassGrant != id {
		t.Errorf("justification %q grant %q; want the caller's justification and the grant", last.Justification, last.BreakglassGrant)
	}

	proxytest.WantCode(t, "forbidden payload under the grant", unary(t, alice, "forbidden"), codes.PermissionDenied, "payload 'forbidden' is never allowed")

	up, err := alice.StreamingInputCall(proxytest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	_ = up.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: []byte("x")}})
	_, err = up.CloseAndRecv()
	proxytest.WantCode(t, "call outside the scope", err, codes.PermissionDenied, "humans may not upload")

	bob := env.Dial(t, "spiffe://example.org/user/bob")
	proxytest.WantCode(t, "someone else's call in the scope", unary(t, bob, "hello"), codes.PermissionDenied, "ztp: denied")

	// Exact expiry: one second before, still allowed; at the instant, denied.
	clock.Advance(28*time.Minute + 59*time.Second)
	if err := unary(t, alice, "hello"); err != nil {
		t.Errorf("UnaryCall 1s before expiry: %v", err)
	}
	clock.Advance(time.Second)
	proxytest.WantCode(t, "UnaryCall at expiry", unary(t, alice, "hello"), codes.PermissionDenied, "ztp: denied")

	out, err = ztpctl(t, env, proxytest.AliceID, "breakglass", "list", "--state", "expired", "-o", "json")
	if err != nil {
		t.Fatalf("breakglass list: %v", err)
	}
	var list struct {
		Grants []struct {
			ID, State, Reason, Duration string
			Approvals                   []struct{ Approver, Comment string }
			Expires                     time.Time
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list -o json %q: %v", out, err)
	}
	if len(list.Grants) != 1 || list.Grants[0].ID != id || list.Grants[0].State != "expired" || list.Grants[0].Duration != "30m0s" ||
		len(list.Grants[0].Approvals) != 1 || list.Grants[0].Approvals[0].Approver != carolID || list.Grants[0].Approvals[0].Comment != "confirmed on the bridge" ||
		list.Grants[0].Expires.Format(time.RFC3339) != expires {
		t.Errorf("list --state expired -o json = %s; want %s expired at %s with carol's approval", out, id, expires)
	}

	// The post-incident review: every record with the grant id.
	var got []string
	for _, r := range grantRecords(t, env, id) {
		switch r.Type {
		case audit.TypeBreakglass:
			ev, _, _ := strings.Cut(r.Detail, ":")
			got = append(got, "breakglass "+ev)
		case audit.TypeRequest:
			got = append(got, "request "+r.Method+" "+r.Decision)
		}
	}
	want := []string{
		"breakglass requested", "breakglass approved", "breakglass activated",
		"request " + unaryCall + " allow", "request " + unaryCall + " allow",
		"request " + unaryCall + " allow", // 1s before expiry
		"breakglass expired",
	}
	if !slices.Equal(got, want) {
		t.Errorf("records with grant %s:\n got %q\nwant %q", id, got, want)
	}
	// The forbidden call is audited as a plain deny (no grant applied).
	for _, r := range env.Requests(t, unaryCall) {
		if r.Decision == "deny" && r.BreakglassGrant != "" {
			t.Errorf("denied call carries grant %q; a grant never applies to a denial", r.BreakglassGrant)
		}
	}

	events := hooks.waitFor(t, 4)
	if want := []string{"requested " + id, "approved " + id, "activated " + id, "expired " + id}; !slices.Equal(events, want) {
		t.Errorf("webhook events %q, want %q", events, want)
	}
}

// TestBreakglassRevokeMidStream: revocation takes effect on the next message,
// even of a stream that started under the grant.
func TestBreakglassRevokeMidStream(t *testing.T) {
	env, _ := startBreakglassEnv(t, proxytest.Options{})
	out, err := ztpctl(t, env, proxytest.AliceID, "breakglass", "request", "--reason", "INC-9 stream", "--scope", "/grpc.testing.TestService/*", "-o", "json")
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	var g struct{ ID, State string }
	if err := json.Unmarshal([]byte(out), &g); err != nil || !strings.HasPrefix(g.ID, "bg-") || g.State != "pending" {
		t.Fatalf("request -o json = %q (%v); want an object with id, pending", out, err)
	}
	if _, err := ztpctl(t, env, carolID, "breakglass", "approve", g.ID); err != nil {
		t.Fatalf("approve: %v", err)
	}

	stream, err := env.Dial(t, proxytest.AliceID).FullDuplexCall(proxytest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("one")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first message under the grant: %v", err)
	}

	// Another human may not revoke; the requester may.
	if _, err := ztpctl(t, env, "spiffe://example.org/user/bob", "breakglass", "revoke", g.ID); err == nil || !strings.Contains(err.Error(), "only the requester") {
		t.Errorf("revoke by bob = %v, want PermissionDenied: only the requester or an approver", err)
	}
	out, err = ztpctl(t, env, proxytest.AliceID, "breakglass", "revoke", g.ID, "--comment", "fixed")
	if err != nil || !strings.Contains(out, g.ID+" revoked at ") || !strings.Contains(out, "by "+proxytest.AliceID) {
		t.Fatalf("revoke = %q, %v; want revoked by alice", out, err)
	}

	_ = stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("two")}})
	_, err = stream.Recv()
	proxytest.WantCode(t, "second message after revoke", err, codes.PermissionDenied, "ztp: denied")
	if n := env.Backend.Messages.Load(); n != 1 {
		t.Errorf("backend received %d messages, want only the one sent before the revoke", n)
	}
	proxytest.WantCode(t, "new call after revoke", unary(t, env.Dial(t, proxytest.AliceID), "x"), codes.PermissionDenied, "ztp: denied")

	if _, err := ztpctl(t, env, carolID, "breakglass", "approve", g.ID); err == nil || !strings.Contains(err.Error(), "FailedPrecondition") || !strings.Contains(err.Error(), "is revoked") {
		t.Errorf("approve after revoke = %v, want FailedPrecondition: is revoked", err)
	}
}

func TestBreakglassSelfApprovalAndDeny(t *testing.T) {
	env, _ := startBreakglassEnv(t, proxytest.Options{})
	out, err := ztpctl(t, env, erinID, "breakglass", "request", "--reason", "INC-10 lead needs access")
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := strings.Cut(out, "\n")

	_, err = ztpctl(t, env, erinID, "breakglass", "approve", id)
	if err == nil || !strings.Contains(err.Error(), "PermissionDenied") || !strings.Contains(err.Error(), "self-approval refused") {
		t.Errorf("self-approval by a lead = %v, want PermissionDenied: self-approval refused", err)
	}
	_, err = ztpctl(t, env, carolID, "breakglass", "approve", "bg-0000000000")
	if err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("approve unknown id = %v, want NotFound", err)
	}

	out, err = ztpctl(t, env, carolID, "breakglass", "deny", id, "--comment", "use the runbook")
	if err != nil || !strings.Contains(out, id+" denied at ") {
		t.Fatalf("deny = %q, %v", out, err)
	}
	_, err = ztpctl(t, env, "spiffe://example.org/lead/frank", "breakglass", "approve", id)
	if err == nil || !strings.Contains(err.Error(), "FailedPrecondition") || !strings.Contains(err.Error(), "is denied") {
		t.Errorf("approve after deny = %v, want FailedPrecondition", err)
	}

	text, err := ztpctl(t, env, proxytest.AliceID, "breakglass", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "REASON") ||
		!strings.HasPrefix(lines[1], id) || !strings.Contains(lines[1], "denied") || !strings.Contains(lines[1], "0/1") {
		t.Errorf("breakglass list =\n%s\nwant a header and one denied row for %s", text, id)
	}
	show, err := ztpctl(t, env, proxytest.AliceID, "breakglass", "show", id)
	if err != nil || !strings.Contains(show, "ended by:  "+carolID) || !strings.Contains(show, "reason:    INC-10 lead needs access") {
		t.Errorf("breakglass show = %q, %v; want the reason and who denied it", show, err)
	}
	empty, err := ztpctl(t, env, proxytest.AliceID, "breakglass", "list", "--state", "active")
	if err != nil || strings.TrimSpace(empty) != "no grants" {
		t.Errorf("list --state active = %q, %v; want \"no grants\"", empty, err)
	}
	recs := grantRecords(t, env, id)
	if len(recs) != 2 || !strings.HasPrefix(recs[1].Detail, "denied: comment: use the runbook") || recs[1].Principal.ID != carolID {
		t.Errorf("records of the denied grant: %d, last %+v; want requested and denied by carol with the comment", len(recs), recs[len(recs)-1])
	}
}

func TestBreakglassUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"approve without id", []string{"breakglass", "approve"}, "accepts 1 arg"},
		{"bad state", []string{"breakglass", "list", "--state", "open"}, `"--state" flag: must be one of pending`},
		{"bad output", []string{"breakglass", "list", "-o", "yaml"}, "must be one of text | json"},
		{"negative duration", []string{"breakglass", "request", "--reason", "x", "--duration", "-1m"}, "--duration must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCtl(t, "", append([]string{"--cacert", "/dev/null"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ztpctl %v = %v, want error containing %q", tc.args, err, tc.want)
			}
			if out != "" {
				t.Errorf("ztpctl %v wrote %q to stdout on error", tc.args, out)
			}
		})
	}
}
