package proxy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/interop/grpc_testing"

	"github.com/ztp-dev/ztp/policy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// queryPolicy asks the backend the caller's own UnaryCall as an effect query, twice (the
// decision's cache answers the second), and allows when the backend answered as itself.
// Payload "twice" makes a second, different query; "empty" asks a method ztp.yaml does
// not list.
const queryPolicy = `package ztp

default allow := false

probe := ztp.query("/grpc.testing.TestService/UnaryCall", input.request)

again := ztp.query("/grpc.testing.TestService/UnaryCall", input.request)

allow if {
	probe.username == "backend"
	again == probe
}

deny contains "second query" if {
	input.request.payload.body == base64.encode("twice")
	ztp.query("/grpc.testing.TestService/UnaryCall", {"payload": {"body": base64.encode("other")}})
}

deny contains "empty" if {
	input.request.payload.body == base64.encode("empty")
	ztp.query("/grpc.testing.TestService/EmptyCall", {})
}
`

const unaryCall = "/grpc.testing.TestService/UnaryCall"

// startQueries starts a proxy whose upstream allows effect queries with the YAML lines
// given (indented under the upstream).
func startQueries(t *testing.T, section string) *proxytest.Env {
	t.Helper()
	e := proxytest.Prepare(t, proxytest.Options{Policy: queryPolicy})
	if section != "" {
		e.RewriteConfig(t, func(s string) string {
			return strings.Replace(s, "    tls: { insecure: true }\n", "    tls: { insecure: true }\n"+section, 1)
		})
	}
	e.Restart(t)
	return e
}

const unaryOnly = "    effect_queries:\n      methods: [/grpc.testing.TestService/UnaryCall]\n      max_per_decision: 1\n      timeout: 300ms\n"

func TestEffectQueryAnsweredCachedAndAudited(t *testing.T) {
	e := startQueries(t, unaryOnly)
	resp, err := e.Dial(t, proxytest.DeployerID).UnaryCall(proxytest.Ctx(t), &grpc_testing.SimpleRequest{Payload: &grpc_testing.Payload{Body: []byte("abc")}})
	if err != nil || resp.GetUsername() != "backend" {
		t.Fatalf("UnaryCall = %v, %v; want the backend's answer", resp, err)
	}
	// One query (asked twice, answered once: max_per_decision is 1) and the call itself.
	if n := e.Backend.Calls.Load(); n != 2 {
		t.Errorf("backend handled %d calls, want 2 (one effect query, one forwarded call)", n)
	}
	recs := e.Requests(t, unaryCall)
	if len(recs) != 1 || recs[0].Decision != "allow" || len(recs[0].Queries) != 1 {
		t.Fatalf("request records = %+v, want one allow with one query", recs)
	}
	q := recs[0].Queries[0]
	// The request as the policy sent it (input.request), the answer as the decoder
	// renders the response; both canonical JSON.
	if q.Method != unaryCall || !strings.Contains(string(q.Request), `"payload":{"body":"YWJj"`) || q.Error != "" {
		t.Errorf("recorded query = %s %s (error %q)", q.Method, q.Request, q.Error)
	}
	sum := sha256.Sum256(q.Answer)
	if !strings.Contains(string(q.Answer), `"username":"backend"`) || !strings.Contains(string(q.Answer), `"payload":{"body":"YWJj"`) || q.AnswerSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("recorded answer %s (sha256 %s), want the backend's echo with its digest", q.Answer, q.AnswerSHA256)
	}
	// The backend heard the query under the proxy's identity alone: no caller metadata,
	// no principal header (the forwarded call that came after it has one).
	if got := e.Backend.MD().Get("x-ztp-principal"); len(got) != 1 {
		t.Errorf("forwarded call x-ztp-principal = %v", got)
	}

	// Replay with the recorded answers decides the same; a candidate that asks something
	// else is reported as not replayable.
	eng, err := policy.Load(proxytest.Ctx(t), policy.Options{Paths: []string{filepath.Join(e.Dir, "policies")}})
	if err != nil {
		t.Fatal(err)
	}
	rp := policy.NewReplayer(eng, policy.ReplayOptions{})
	for _, r := range recs {
		if err := rp.Add(proxytest.Ctx(t), r); err != nil {
			t.Fatal(err)
		}
	}
	if rep := rp.Report(); rep.Replayed != 1 || rep.Unchanged != 1 || rep.EvalErrors != 0 {
		t.Errorf("replay with recorded answers = %+v, want 1 replayed, unchanged", rep)
	}
	dir := t.TempDir()
	other := strings.Replace(queryPolicy, `probe := ztp.query("/grpc.testing.TestService/UnaryCall", input.request)`,
		`probe := ztp.query("/grpc.testing.TestService/UnaryCall", {"payload": {"body": "eHl6"}})`, 1)
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	cand, err := policy.Load(proxytest.Ctx(t), policy.Options{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	rp = policy.NewReplayer(cand, policy.ReplayOptions{})
	if err := rp.Add(proxytest.Ctx(t), recs[0]); err != nil {
		t.Fatal(err)
	}
	if rep := rp.Report(); rep.Replayed != 0 || rep.Skipped[policy.SkipQueryNotRecorded] != 1 {
		t.Errorf("replay of a query the record does not hold = %+v, want it skipped as %s", rep, policy.SkipQueryNotRecorded)
	}
}

// Every failing query denies the call, which then never reaches the backend; the failure
// is in the audit record.
func TestEffectQueryFailuresDeny(t *testing.T) {
	for _, tc := range []struct {
		name    string
		section string
		body    string
		status  *grpc_testing.EchoStatus
		want    string
		queries int64 // calls the backend handled: the queries that reached it
	}{
		{"not configured", "", "abc", nil, "no upstream to ask here", 0},
		{"method not listed", unaryOnly, "empty", nil, "upstream test allows no effect query /grpc.testing.TestService/EmptyCall", 1},
		{"over the limit", unaryOnly, "twice", nil, "more than 1 effect queries in one decision", 1},
		{"timeout", unaryOnly, "hang", nil, "effect queries took longer than 300ms", 1},
		{"upstream error", unaryOnly, "abc", &grpc_testing.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing"}, "upstream test: rpc error: code = NotFound desc = no such thing", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startQueries(t, tc.section)
			_, err := e.Dial(t, proxytest.DeployerID).UnaryCall(proxytest.Ctx(t), &grpc_testing.SimpleRequest{
				Payload: &grpc_testing.Payload{Body: []byte(tc.body)}, ResponseStatus: tc.status,
			})
			proxytest.WantCode(t, "UnaryCall", err, codes.PermissionDenied, tc.want)
			if n := e.Backend.Calls.Load(); n != tc.queries {
				t.Errorf("backend handled %d calls, want %d (the queries; never the call itself)", n, tc.queries)
			}
			recs := e.Requests(t, unaryCall)
			if len(recs) != 1 || recs[0].Decision != "error" || !strings.Contains(strings.Join(recs[0].Reasons, ";"), tc.want) {
				t.Fatalf("records = %+v, want one error decision naming %q", recs, tc.want)
			}
			if tc.queries > 0 {
				qs := recs[0].Queries
				if len(qs) == 0 || qs[len(qs)-1].Error == "" || qs[len(qs)-1].AnswerSHA256 != "" {
					t.Errorf("recorded queries = %+v, want the failed one last, with its error and no digest", qs)
				}
			}
		})
	}
}

// The proxy refuses to start with a query method the descriptors do not define, or one
// that streams.
func TestEffectQueryMethodsChecked(t *testing.T) {
	for _, tc := range []struct{ method, want string }{
		{"/grpc.testing.TestService/NoSuch", "upstreams[0] (test): effect_queries.methods[0]: "},
		{"/grpc.testing.TestService/FullDuplexCall", "effect_queries.methods[0]: /grpc.testing.TestService/FullDuplexCall is a streaming method"},
	} {
		e := proxytest.Prepare(t, proxytest.Options{Policy: queryPolicy})
		e.RewriteConfig(t, func(s string) string {
			return strings.Replace(s, "    tls: { insecure: true }\n", "    tls: { insecure: true }\n    effect_queries: { methods: ["+tc.method+"] }\n", 1)
		})
		srv, err := e.NewServer(t)
		if err == nil {
			srv.Shutdown(proxytest.Ctx(t))
			t.Fatalf("proxy.New with effect query %s succeeded", tc.method)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("proxy.New = %v, want %q", err, tc.want)
		}
	}
}
