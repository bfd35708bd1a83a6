package policy

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/audit"
)

var recTime = time.Date(2026, 11, 26, 10, 0, 0, 123456789, time.UTC)

func TestRecordInput(t *testing.T) {
	alice := &audit.Principal{ID: aliceID, Kind: "human", Groups: []string{"sre"}, Authn: "mtls"}
	tests := []struct {
		name           string
		rec            audit.Record
		client, server bool
		want           string // JSON
	}{
		{
			name: "decoded request with metadata and justification",
			rec: audit.Record{
				Seq: 7, Time: recTime, Type: "request", Principal: alice, Method: "/etcdserverpb.KV/Put", Upstream: "etcd",
				MessageIndex: 2, Request: json.RawMessage(`{"key":"Zm9v","lease":"12345678901234567890","password":"[redacted]"}`), RequestDecoded: true,
				Metadata: map[string][]string{"x-request-id": {"r-1", "r-2"}}, Justification: "rotate", Ticket: "INC-1",
				Decision: "allow", PolicyVersion: "sha256:x",
			},
			client: true,
			want: `{"principal":{"id":"` + aliceID + `","kind":"human","groups":["sre"],"authn":"mtls"},
				"method":"/etcdserverpb.KV/Put","service":"etcdserverpb.KV","rpc":"Put","upstream":"etcd",
				"request":{"key":"Zm9v","lease":"12345678901234567890","password":"[redacted]"},"request_decoded":true,"request_undecoded_reason":"","request_unknown_fields":[],
				"stream":{"client_streaming":true,"server_streaming":false,"message_index":2},
				"metadata":{"x-request-id":["r-1","r-2"]},"justification":"rotate","ticket":"INC-1",
				"breakglass":{"active":false},"time":"2026-11-26T10:00:00Z"}`,
		},
		{
			name: "undecoded as too complex",
			rec: audit.Record{
				Seq: 10, Time: recTime, Type: "request", Principal: &audit.Principal{ID: "cn:x", Kind: "automation", Authn: "mtls"},
				Method: "/a.B/C", Upstream: "u", Decision: "deny", PolicyVersion: "sha256:x", Detail: "too_complex",
			},
			want: `{"principal":{"id":"cn:x","kind":"automation","groups":[],"authn":"mtls"},
				"method":"/a.B/C","service":"a.B","rpc":"C","upstream":"u","request":null,"request_decoded":false,
				"request_undecoded_reason":"too_complex","request_unknown_fields":[],
				"stream":{"client_streaming":false,"server_streaming":false,"message_index":0},
				"metadata":{},"justification":"","ticket":"","breakglass":{"active":false},"time":"2026-11-26T10:00:00Z"}`,
		},
		{
			name: "decoded with unknown fields",
			rec: audit.Record{
				Seq: 11, Time: recTime, Type: "request", Principal: alice, Method: "/etcdserverpb.KV/Put", Upstream: "etcd",
				Request: json.RawMessage(`{"key":"Zm9v"}`), RequestDecoded: true, RequestUnknownFields: []string{"15", "success.requestPut.9"},
				Decision: "deny", PolicyVersion: "sha256:x",
			},
			want: `{"principal":{"id":"` + aliceID + `","kind":"human","groups":["sre"],"authn":"mtls"},
				"method":"/etcdserverpb.KV/Put","service":"etcdserverpb.KV","rpc":"Put","upstream":"etcd",
				"request":{"key":"Zm9v"},"request_decoded":true,"request_undecoded_reason":"","request_unknown_fields":["15","success.requestPut.9"],
				"stream":{"client_streaming":false,"server_streaming":false,"message_index":0},
				"metadata":{},"justification":"","ticket":"","breakglass":{"active":false},"time":"2026-11-26T10:00:00Z"}`,
		},
		{
			name: "undecoded, no metadata, no groups",
			rec: audit.Record{
				Seq: 8, Time: recTime, Type: "request", Principal: &audit.Principal{ID: "cn:x", Kind: "automation", Authn: "mtls"},
				Method: "/a.B/C", Upstream: "u", Decision: "deny", PolicyVersion: "sha256:x",
			},
			want: `{"principal":{"id":"cn:x","kind":"automation","groups":[],"authn":"mtls"},
				"method":"/a.B/C","service":"a.B","rpc":"C","upstream":"u","request":null,"request_decoded":false,"request_undecoded_reason":"","request_unknown_fields":[],
				"stream":{"client_streaming":false,"server_streaming":false,"message_index":0},
				"metadata":{},"justification":"","ticket":"","breakglass":{"active":false},"time":"2026-11-26T10:00:00Z"}`,
		},
		{
			name: "decoded empty message, allowed under break-glass",
			rec: audit.Record{
				Seq: 9, Time: recTime, Type: "request", Principal: alice, Method: "/a.B/C", RequestDecoded: true,
				Justification: "outage", Ticket: "INC-2", BreakglassGrant: "bg-1", Decision: "allow", PolicyVersion: "sha256:x",
			},
			want: `{"principal":{"id":"` + aliceID + `","kind":"human","groups":["sre"],"authn":"mtls"},
				"method":"/a.B/C","service":"a.B","rpc":"C","upstream":"","request":{},"request_decoded":true,"request_undecoded_reason":"","request_unknown_fields":[],
				"stream":{"client_streaming":false,"server_streaming":false,"message_index":0},
				"metadata":{},"justification":"outage","ticket":"INC-2",
				"breakglass":{"active":true,"grant":"bg-1","reason":"outage","ticket":"INC-2"},"time":"2026-11-26T10:00:00Z"}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RecordInput(&tc.rec, tc.client, tc.server)
			if err != nil {
				t.Fatalf("RecordInput: %v", err)
			}
			gotJSON, _ := json.Marshal(got)
			want := decodeJSON(t, []byte(tc.want))
			if !reflect.DeepEqual(decodeJSON(t, gotJSON), want) {
				t.Errorf("RecordInput =\n%s\nwant\n%s", gotJSON, tc.want)
			}
		})
	}
}

func TestReplayer(t *testing.T) {
	// The candidate: humans may no longer call Delete, and automation may now Put.
	e := loadPolicy(t, `package ztp

default allow := false

allow if input.principal.kind == "human"

allow if {
	input.principal.kind == "automation"
	input.rpc == "Put"
}

deny contains "humans may not delete" if {
	input.principal.kind == "human"
	input.rpc == "Delete"
}

forbid contains "never after 2030" if time.parse_rfc3339_ns(input.time) >= time.parse_rfc3339_ns("2030-01-01T00:00:00Z")
`, nil)
	human := &audit.Principal{ID: aliceID, Kind: "human", Groups: []string{"sre"}, Authn: "mtls"}
	robot := &audit.Principal{ID: deployerID, Kind: "automation", Groups: []string{"deployers"}, Authn: "mtls"}
	seq := uint64(0)
	req := func(p *audit.Principal, method, decision string, mod ...func(*audit.Record)) *audit.Record {
		seq++
		r := &audit.Record{Seq: seq, Time: recTime, Type: "request", Principal: p, Method: method, Upstream: "u", Decision: decision, PolicyVersion: "sha256:old", Reasons: []string{"recorded reason"}}
		for _, m := range mod {
			m(r)
		}
		return r
	}
	records := []*audit.Record{
		{Seq: 100, Time: recTime, Type: "system", Detail: "started"},
		req(human, "/s.S/Delete", "allow"),                       // allow → deny
		req(human, "/s.S/Delete", "allow"),                       // allow → deny
		req(human, "/s.S/Delete", "dryrun_deny"),                 // unchanged (deny)
		req(human, "/s.S/Get", "allow"),                          // unchanged
		req(robot, "/s.S/Put", "deny"),                           // deny → allow
		req(robot, "/s.S/Put", "deny"),                           // deny → allow
		req(robot, "/s.S/Put", "error", because("eval failed")),  // deny → allow, another reason: its own group
		req(robot, "/s.S/Get", "deny"),                           // unchanged
		req(human, "/s.S/Delete", "allow", grant("bg-1")),        // unchanged: the grant overrides deny
		req(human, "/s.S/Get", "allow", at(2031), grant("bg-2")), // allow → deny: forbid beats the grant
		req(human, "/s.S/Get", "ratelimited"),
		req(human, "/ztp.v1.Audit/Export", "allow"),
		req(nil, "/s.S/Get", "deny", func(r *audit.Record) { r.PolicyVersion = "" }),
		req(robot, "/s.S/Put", "deny", at(2020)), // before --since
		// Only the beginning of the request was recorded: the policy decided on all of it.
		req(robot, "/s.S/Put", "deny", func(r *audit.Record) { r.RequestDecoded, r.RequestTruncated = true, `{"key":"Zm9v","value":"AAAA` }),
		{Seq: 200, Time: recTime, Type: "outcome", Ref: 1, Code: "OK"},
	}
	r := NewReplayer(e, ReplayOptions{Since: recTime.Add(-time.Hour), Examples: 1})
	for _, rec := range records {
		if err := r.Add(testCtx(t), rec); err != nil {
			t.Fatalf("Add(seq %d): %v", rec.Seq, err)
		}
	}
	got := r.Report()
	want := &ReplayReport{
		Version:   e.Version(),
		Recorded:  []string{"sha256:old"},
		FirstSeq:  1,
		LastSeq:   10,
		Replayed:  10,
		Unchanged: 4,
		AllowToDeny: ReplayChange{Count: 3, Groups: []ReplayGroup{
			{Method: "/s.S/Delete", Principal: aliceID, Count: 2, Examples: []uint64{1}, Reasons: []string{"humans may not delete"}},
			{Method: "/s.S/Get", Principal: aliceID, Count: 1, Examples: []uint64{10}, Reasons: []string{"never after 2030"}},
		}},
		DenyToAllow: ReplayChange{Count: 3, Groups: []ReplayGroup{
			{Method: "/s.S/Put", Principal: deployerID, Count: 2, Examples: []uint64{5}, Reasons: []string{"recorded reason"}},
			{Method: "/s.S/Put", Principal: deployerID, Count: 1, Examples: []uint64{7}, Reasons: []string{"eval failed"}},
		}},
		Skipped: map[string]int{SkipRatelimited: 1, SkipControlAPI: 1, SkipBeforePolicy: 1, SkipBeforeSince: 1, SkipTruncated: 1},
	}
	if !reflect.DeepEqual(got, want) {
		gotJSON, _ := json.MarshalIndent(got, "", "  ")
		wantJSON, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("Report() =\n%s\nwant\n%s", gotJSON, wantJSON)
	}
}

func grant(id string) func(*audit.Record) {
	return func(r *audit.Record) { r.BreakglassGrant = id }
}

func because(reasons ...string) func(*audit.Record) {
	return func(r *audit.Record) { r.Reasons = reasons }
}

func at(year int) func(*audit.Record) {
	return func(r *audit.Record) { r.Time = time.Date(year, 1, 2, 3, 4, 5, 0, time.UTC) }
}

// TestReplayStreamingFlags: the streaming flags come from the caller, as the record lacks
// them, and the evaluation sees the recorded time through time.now_ns too.
func TestReplayStreamingFlags(t *testing.T) {
	e := loadPolicy(t, `package ztp

allow if {
	input.stream.client_streaming
	time.now_ns() == time.parse_rfc3339_ns("2026-11-26T10:00:00.123456789Z")
}
`, nil)
	rec := &audit.Record{Seq: 1, Time: recTime, Type: "request", Principal: &audit.Principal{ID: "x"}, Method: "/s.S/Upload", Decision: "allow", PolicyVersion: "v"}
	for _, tc := range []struct {
		name      string
		streaming func(string) (bool, bool)
		changes   int
	}{
		{"flags known", func(m string) (bool, bool) { return m == "/s.S/Upload", false }, 0},
		{"flags unknown", nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReplayer(e, ReplayOptions{Streaming: tc.streaming})
			if err := r.Add(testCtx(t), rec); err != nil {
				t.Fatal(err)
			}
			if got := r.Report().AllowToDeny.Count; got != tc.changes {
				t.Errorf("allow→deny = %d, want %d", got, tc.changes)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	tests := []struct {
		name  string
		res   Result
		err   error
		mode  Mode
		grant string
		want  string
	}{
		{"error", Result{}, ErrEval, Enforce, "bg-1", "the policy failed to evaluate, and an error denies; break-glass cannot override it"},
		{"forbid", Result{Allow: true, Forbid: []string{"f"}}, nil, Enforce, "bg-1", "forbid matched; nothing overrides forbid, not even break-glass"},
		{"grant over deny", Result{Allow: true, Deny: []string{"d"}}, nil, DryRun, "bg-1", "break-glass grant bg-1 overrides what the policy alone says (its reasons are kept); forbid did not match"},
		{"grant, policy allows", Result{Allow: true}, nil, Enforce, "bg-1", "the policy allows, and break-glass grant bg-1 is recorded with the call"},
		{"deny", Result{Allow: true, Deny: []string{"d"}}, nil, Enforce, "", "deny matched; an active break-glass grant would override it"},
		{"undefined", Result{AllowUndefined: true}, nil, Enforce, "", "allow is undefined: no allow rule applied and the policy has no default"},
		{"false in dryrun", Result{}, nil, DryRun, "", "allow is false; in dryrun mode the message is forwarded anyway and recorded as dryrun_deny"},
		{"allow", Result{Allow: true}, nil, DryRun, "", "allow is true and neither deny nor forbid matched"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Explain(tc.res, tc.err, tc.mode, tc.grant); got != tc.want {
				t.Errorf("Explain(%+v, %v, %s, %q) = %q, want %q", tc.res, tc.err, tc.mode, tc.grant, got, tc.want)
			}
		})
	}
}
