package breakglass

import (
	"errors"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/identity"
)

const (
	maintMethod = "/etcdserverpb.Maintenance/Defragment"
	kvMethod    = "/etcdserverpb.KV/DeleteRange"
)

func TestRequestValidation(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name      string
		who       identity.Principal
		req       GrantRequest
		wantErr   error
		wantMsg   string
		wantDur   time.Duration
		wantScope []string
	}{
		{name: "defaults: max duration, every method", who: alice, req: GrantRequest{Reason: "INC-4711 etcd quorum loss"},
			wantDur: time.Hour, wantScope: []string{AllMethods}},
		{name: "explicit duration and scope, deduplicated", who: alice,
			req:     GrantRequest{Reason: "x", Duration: 30 * time.Minute, Scope: []string{"/etcdserverpb.Maintenance/*", " /etcdserverpb.Maintenance/* ", "/etcdserverpb.KV/Range"}},
			wantDur: 30 * time.Minute, wantScope: []string{"/etcdserverpb.Maintenance/*", "/etcdserverpb.KV/Range"}},
		{name: "exactly the maximum", who: alice, req: GrantRequest{Reason: "x", Duration: time.Hour}, wantDur: time.Hour, wantScope: []string{AllMethods}},
		{name: "automation may not request", who: deployer, req: GrantRequest{Reason: "x"}, wantErr: ErrNotAllowed, wantMsg: "only humans may request"},
		{name: "automation in the approver group neither", who: leadBot, req: GrantRequest{Reason: "x"}, wantErr: ErrNotAllowed, wantMsg: "only humans"},
		{name: "reason missing", who: alice, req: GrantRequest{}, wantErr: ErrInvalidRequest, wantMsg: "a reason is required"},
		{name: "reason blank", who: alice, req: GrantRequest{Reason: " \t "}, wantErr: ErrInvalidRequest, wantMsg: "a reason is required"},
		{name: "reason with a newline", who: alice, req: GrantRequest{Reason: "a\nb"}, wantErr: ErrInvalidRequest, wantMsg: "control characters"},
		{name: "reason too long", who: alice, req: GrantRequest{Reason: strings.Repeat("x", maxReasonLen+1)}, wantErr: ErrInvalidRequest, wantMsg: "longer than"},
		{name: "above the maximum is refused, not capped", who: alice, req: GrantRequest{Reason: "x", Duration: time.Hour + time.Second},
			wantErr: ErrInvalidRequest, wantMsg: "duration 1h0m1s exceeds breakglass.max_duration 1h0m0s"},
		{name: "negative duration", who: alice, req: GrantRequest{Reason: "x", Duration: -time.Minute}, wantErr: ErrInvalidRequest, wantMsg: "must be positive"},
		{name: "fractional seconds", who: alice, req: GrantRequest{Reason: "x", Duration: 1500 * time.Millisecond}, wantErr: ErrInvalidRequest, wantMsg: "whole seconds"},
		{name: "scope without a leading slash", who: alice, req: GrantRequest{Reason: "x", Scope: []string{"etcdserverpb.KV/*"}}, wantErr: ErrInvalidRequest, wantMsg: "/package.Service/Method"},
		{name: "scope that can never match", who: alice, req: GrantRequest{Reason: "x", Scope: []string{"/etcdserverpb.*"}}, wantErr: ErrInvalidRequest, wantMsg: "/package.Service/Method"},
		{name: "scope with three segments", who: alice, req: GrantRequest{Reason: "x", Scope: []string{"/a/b/c"}}, wantErr: ErrInvalidRequest, wantMsg: "/package.Service/Method"},
		{name: "scope with a trailing slash", who: alice, req: GrantRequest{Reason: "x", Scope: []string{"/a/"}}, wantErr: ErrInvalidRequest, wantMsg: "/package.Service/Method"},
		{name: "malformed glob", who: alice, req: GrantRequest{Reason: "x", Scope: []string{"/a/[b"}}, wantErr: ErrInvalidRequest, wantMsg: "syntax error"},
		{name: "empty glob", who: alice, req: GrantRequest{Reason: "x", Scope: []string{""}}, wantErr: ErrInvalidRequest, wantMsg: "empty scope"},
		{name: "too many globs", who: alice, req: GrantRequest{Reason: "x", Scope: slices.Repeat([]string{"/a/b"}, maxScopes+1)}, wantErr: ErrInvalidRequest, wantMsg: "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.records(""))
			g, err := e.store.Request(testCtx(t), tt.who, tt.req)
			if tt.wantErr != nil {
				wantErr(t, "Request", err, tt.wantErr, tt.wantMsg)
				if n := len(e.records("")); n != before {
					t.Errorf("a refused request wrote %d audit records, want none", n-before)
				}
				return
			}
			if err != nil {
				t.Fatalf("Request(%+v) = %v", tt.req, err)
			}
			if g.Duration != tt.wantDur || !slices.Equal(g.Scope, tt.wantScope) || g.State != StatePending {
				t.Errorf("Request = duration %s scope %q state %s; want %s %q pending", g.Duration, g.Scope, g.State, tt.wantDur, tt.wantScope)
			}
		})
	}
}

// TestLifecycle walks a grant that needs two approvals from request to
// expiry, checking the state, the lookup and the trail at each step.
func TestLifecycle(t *testing.T) {
	notes := make(chanNotifier, 16)
	e := newEnv(t, func(o *Options) { o.ApprovalsRequired = 2; o.Notifier = notes })
	g := e.request(alice, GrantRequest{Reason: "INC-4711 etcd quorum loss", Ticket: "INC-4711", Duration: 30 * time.Minute, Scope: []string{"/etcdserverpb.Maintenance/*"}})
	if g.State != StatePending || !strings.HasPrefix(g.ID, "bg-") || len(g.ID) != 13 {
		t.Fatalf("Request = %+v; want a pending grant with id bg-<10 hex>", g)
	}
	if _, ok := e.store.Active(alice.ID, maintMethod, e.clock.Now()); ok {
		t.Error("Active(pending grant) = true, want false")
	}

	refusals := []struct {
		name    string
		who     identity.Principal
		wantErr error
		wantMsg string
	}{
		{"self-approval", alice, ErrNotAllowed, "approver_groups"}, // alice is not even a lead
		{"automation in the approver group", leadBot, ErrNotAllowed, "only humans may approve"},
		{"human outside the approver groups", bob, ErrNotAllowed, "only humans in breakglass.approver_groups (sre-leads)"},
	}
	for _, r := range refusals {
		_, err := e.store.Approve(testCtx(t), r.who, g.ID, "")
		wantErr(t, "Approve by "+r.name, err, r.wantErr, r.wantMsg)
	}
	_, err := e.store.Approve(testCtx(t), lead1, "bg-0000000000", "")
	wantErr(t, "Approve(unknown id)", err, ErrNotFound, "bg-0000000000")

	e.clock.Advance(time.Minute)
	g = e.approve(lead1, g.ID)
	if g.State != StatePending || len(g.Approvals) != 1 || g.Approvals[0].Approver != lead1.ID {
		t.Fatalf("after one approval: %+v; want pending with lead1's approval", g)
	}
	_, err = e.store.Approve(testCtx(t), lead1, g.ID, "")
	wantErr(t, "second Approve by the same lead", err, ErrAlreadyApproved, "1 of 2")

	e.clock.Advance(time.Minute)
	activatedAt := e.clock.Now()
	g, err = e.store.Approve(testCtx(t), lead2, g.ID, "saw the dashboard")
	if err != nil {
		t.Fatal(err)
	}
	if g.State != StateActive || !g.Activated.Equal(activatedAt) || !g.Expires.Equal(activatedAt.Add(30*time.Minute)) {
		t.Fatalf("after two approvals: state %s activated %s expires %s; want active from %s for 30m", g.State, g.Activated, g.Expires, activatedAt)
	}

	lookups := []struct {
		name   string
		who    string
		method string
		at     time.Time
		want   bool
	}{
		{"in scope", alice.ID, maintMethod, activatedAt, true},
		{"other service", alice.ID, kvMethod, activatedAt, false},
		{"other principal", bob.ID, maintMethod, activatedAt, false},
		{"one nanosecond before expiry", alice.ID, maintMethod, g.Expires.Add(-time.Nanosecond), true},
		{"at expiry", alice.ID, maintMethod, g.Expires, false},
		{"after expiry", alice.ID, maintMethod, g.Expires.Add(time.Second), false},
	}
	for _, l := range lookups {
		a, ok := e.store.Active(l.who, l.method, l.at)
		if ok != l.want || ok && (a.ID != g.ID || a.Reason != g.Reason || a.Ticket != "INC-4711" || !a.Expires.Equal(g.Expires)) {
			t.Errorf("Active(%s) = %+v, %v; want %v for grant %s", l.name, a, ok, l.want, g.ID)
		}
	}

	// Expiry is enforced by Active alone; the sweep writes the trail.
	e.clock.Advance(30 * time.Minute)
	if got, _ := e.store.Get(g.ID); got.State != StateExpired || !got.Ended.Equal(g.Expires) {
		t.Errorf("Get after expiry, before the sweep: state %s ended %s; want expired at %s", got.State, got.Ended, g.Expires)
	}
	_, err = e.store.Approve(testCtx(t), lead1, g.ID, "")
	wantErr(t, "Approve(expired)", err, ErrWrongState, "is expired")
	_, err = e.store.Revoke(testCtx(t), alice, g.ID, "")
	wantErr(t, "Revoke(expired)", err, ErrWrongState, "already expired")
	if err := e.store.Sweep(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Sweep(testCtx(t)); err != nil { // idempotent: no second record
		t.Fatal(err)
	}

	recs := e.records(g.ID)
	if got, want := events(recs), []string{"requested", "approved", "approved", "activated", "expired"}; !slices.Equal(got, want) {
		t.Fatalf("audit events = %q, want %q", got, want)
	}
	actors := []string{alice.ID, lead1.ID, lead2.ID, lead2.ID, ""}
	for i, r := range recs {
		got := ""
		if r.Principal != nil {
			got = r.Principal.ID
		}
		if got != actors[i] || r.Justification != "INC-4711 etcd quorum loss" || r.Ticket != "INC-4711" {
			t.Errorf("record %d (%s): principal %q justification %q ticket %q; want %q, the reason and the ticket", i, r.Detail, got, r.Justification, r.Ticket, actors[i])
		}
	}
	if !strings.Contains(recs[2].Detail, "2 of 2") || !strings.Contains(recs[2].Detail, "comment: saw the dashboard") {
		t.Errorf("approval record detail %q, want the count and the comment", recs[2].Detail)
	}
	if recs[2].Principal.Authn != identity.AuthnJWT {
		t.Errorf("approval record authn %q, want jwt", recs[2].Principal.Authn)
	}
	if !strings.Contains(recs[4].Detail, g.Expires.UTC().Format(time.RFC3339)) || !recs[4].Time.Equal(e.clock.Now()) {
		t.Errorf("expiry record %q at %s; want the expiry instant named, recorded at the sweep", recs[4].Detail, recs[4].Time)
	}

	var got []string
	for len(notes) > 0 {
		n := <-notes
		got = append(got, n.Event)
		if n.Grant.ID != g.ID || n.AuditSeq == 0 {
			t.Errorf("notification %+v: want grant %s with its audit seq", n, g.ID)
		}
	}
	if want := events(recs); !slices.Equal(got, want) {
		t.Errorf("notifications %q, want one per audited change %q", got, want)
	}
}

func TestSelfService(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ApprovalsRequired = 0; o.ApproverGroups = nil })
	g := e.request(alice, GrantRequest{Reason: "INC-1", Duration: 10 * time.Minute})
	if g.State != StateActive || !g.Expires.Equal(e.clock.Now().Add(10*time.Minute)) {
		t.Fatalf("self-service request: %+v; want active for 10m at once", g)
	}
	if _, ok := e.store.Active(alice.ID, kvMethod, e.clock.Now()); !ok {
		t.Error("Active(default scope) = false, want every method covered")
	}
	if got, want := events(e.records(g.ID)), []string{"requested", "activated"}; !slices.Equal(got, want) {
		t.Errorf("audit events %q, want %q", got, want)
	}
	// Nobody can approve or deny without approver groups; the requester can revoke.
	_, err := e.store.Deny(testCtx(t), lead1, g.ID, "")
	wantErr(t, "Deny without approver groups", err, ErrNotAllowed, "(none configured)")
	if _, err := e.store.Revoke(testCtx(t), alice, g.ID, "fixed"); err != nil {
		t.Fatalf("Revoke by requester: %v", err)
	}
}

func TestDenyAndRevoke(t *testing.T) {
	tests := []struct {
		name      string
		activate  bool // approve first
		action    func(e *env, id string) (Grant, error)
		wantErr   error
		wantMsg   string
		wantState State
		wantEvent string
	}{
		{name: "lead denies a pending grant", action: func(e *env, id string) (Grant, error) {
			return e.store.Deny(testCtx(e.t), lead1, id, "use the runbook")
		},
			wantState: StateDenied, wantEvent: "denied"},
		{name: "requester cannot deny their own", action: func(e *env, id string) (Grant, error) { return e.store.Deny(testCtx(e.t), lead1Requester, id, "") },
			wantErr: ErrSelfApproval, wantMsg: "revoke it"},
		{name: "non-approver cannot deny", action: func(e *env, id string) (Grant, error) { return e.store.Deny(testCtx(e.t), bob, id, "") },
			wantErr: ErrNotAllowed, wantMsg: "may deny"},
		{name: "automation cannot deny", action: func(e *env, id string) (Grant, error) { return e.store.Deny(testCtx(e.t), leadBot, id, "") },
			wantErr: ErrNotAllowed, wantMsg: "only humans may deny"},
		{name: "an active grant is revoked, not denied", activate: true, action: func(e *env, id string) (Grant, error) { return e.store.Deny(testCtx(e.t), lead2, id, "") },
			wantErr: ErrWrongState, wantMsg: "is active"},
		{name: "requester revokes a pending grant", action: func(e *env, id string) (Grant, error) { return e.store.Revoke(testCtx(e.t), lead1Requester, id, "") },
			wantState: StateRevoked, wantEvent: "revoked"},
		{name: "requester revokes an active grant", activate: true, action: func(e *env, id string) (Grant, error) {
			return e.store.Revoke(testCtx(e.t), lead1Requester, id, "done")
		},
			wantState: StateRevoked, wantEvent: "revoked"},
		{name: "an approver revokes an active grant", activate: true, action: func(e *env, id string) (Grant, error) { return e.store.Revoke(testCtx(e.t), lead2, id, "") },
			wantState: StateRevoked, wantEvent: "revoked"},
		{name: "another human cannot revoke", activate: true, action: func(e *env, id string) (Grant, error) { return e.store.Revoke(testCtx(e.t), bob, id, "") },
			wantErr: ErrNotAllowed, wantMsg: "only the requester"},
		{name: "automation cannot revoke", activate: true, action: func(e *env, id string) (Grant, error) { return e.store.Revoke(testCtx(e.t), leadBot, id, "") },
			wantErr: ErrNotAllowed, wantMsg: "only the requester"},
		{name: "unknown grant", action: func(e *env, _ string) (Grant, error) { return e.store.Revoke(testCtx(e.t), lead2, "bg-nope", "") },
			wantErr: ErrNotFound, wantMsg: "bg-nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			// The requester is a lead, so that "approver" and "requester" differ
			// only by identity.
			g := e.request(lead1Requester, GrantRequest{Reason: "INC-2", Scope: []string{"/etcdserverpb.KV/*"}})
			if tt.activate {
				e.approve(lead1, g.ID)
			}
			before := e.records(g.ID)
			e.clock.Advance(time.Minute)
			got, err := tt.action(e, g.ID)
			if tt.wantErr != nil {
				wantErr(t, tt.name, err, tt.wantErr, tt.wantMsg)
				if n := len(e.records(g.ID)); n != len(before) {
					t.Errorf("refused action wrote %d audit records", n-len(before))
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if got.State != tt.wantState || !got.Ended.Equal(e.clock.Now()) || got.EndedBy == "" {
				t.Errorf("state %s ended %s by %q; want %s now, by the actor", got.State, got.Ended, got.EndedBy, tt.wantState)
			}
			if _, ok := e.store.Active(lead1Requester.ID, kvMethod, e.clock.Now()); ok {
				t.Error("Active after the grant ended = true")
			}
			recs := e.records(g.ID)
			if last := events(recs)[len(recs)-1]; last != tt.wantEvent || recs[len(recs)-1].Principal.ID != got.EndedBy {
				t.Errorf("last audit record %q by %v, want %q by %s", recs[len(recs)-1].Detail, recs[len(recs)-1].Principal, tt.wantEvent, got.EndedBy)
			}
			_, err = e.store.Approve(testCtx(t), lead2, g.ID, "")
			wantErr(t, "Approve after the end", err, ErrWrongState, "only a pending grant")
			_, err = e.store.Revoke(testCtx(t), lead1Requester, g.ID, "")
			wantErr(t, "Revoke after the end", err, ErrWrongState, "already")
		})
	}
}

// lead1Requester is a lead who requests a grant (and so cannot approve it).
var lead1Requester = identity.Principal{ID: "spiffe://example.org/lead/erin", Kind: identity.KindHuman, Groups: []string{"sre", "sre-leads"}, Authn: identity.AuthnMTLS}

func TestSelfApprovalByALead(t *testing.T) {
	e := newEnv(t, nil)
	g := e.request(lead1Requester, GrantRequest{Reason: "INC-3"})
	_, err := e.store.Approve(testCtx(t), lead1Requester, g.ID, "")
	wantErr(t, "self-approval by a lead", err, ErrSelfApproval, "another member of sre-leads")
	if got, _ := e.store.Get(g.ID); got.State != StatePending || len(got.Approvals) != 0 {
		t.Errorf("after refused self-approval: %+v; want pending, no approvals", got)
	}
}

// TestOnePersonTwoIdentities: a person who requested a grant with one id (a
// certificate) cannot approve or deny it with another (a token) when the
// principal rules say both are the same person, nor approve twice under two
// ids; the person is kept across restarts.
func TestOnePersonTwoIdentities(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ApprovalsRequired = 2 })
	erinCert := lead1Requester
	erinCert.Person = "erin@example.org"
	erinToken := identity.Principal{ID: "erin@example.org", Kind: identity.KindHuman, Groups: []string{"sre", "sre-leads"}, Authn: identity.AuthnJWT}
	g := e.request(erinCert, GrantRequest{Reason: "INC-7"})
	_, err := e.store.Approve(testCtx(t), erinToken, g.ID, "")
	wantErr(t, "approval by the requester's token", err, ErrSelfApproval, "you requested")
	_, err = e.store.Deny(testCtx(t), erinToken, g.ID, "")
	wantErr(t, "denial by the requester's token", err, ErrSelfApproval, "you requested")

	frankCert := lead1
	frankCert.Person = "frank@example.org"
	frankToken := identity.Principal{ID: "frank@example.org", Kind: identity.KindHuman, Groups: []string{"sre", "sre-leads"}, Authn: identity.AuthnJWT}
	e.approve(frankCert, g.ID)
	_, err = e.store.Approve(testCtx(t), frankToken, g.ID, "")
	wantErr(t, "second approval by the same person's token", err, ErrAlreadyApproved, "you already approved")

	e.restart()
	got, _ := e.store.Get(g.ID)
	if got.RequesterPerson != "erin@example.org" || len(got.Approvals) != 1 || got.Approvals[0].Person != "frank@example.org" {
		t.Fatalf("after restart: %+v; want the requester's and the approver's persons kept", got)
	}
	_, err = e.store.Approve(testCtx(t), erinToken, g.ID, "")
	wantErr(t, "approval by the requester's token after a restart", err, ErrSelfApproval, "you requested")
	if got, _ := e.store.Get(g.ID); got.State != StatePending {
		t.Errorf("state %s, want pending: two approvals by others are required", got.State)
	}
}

// TestPersonRulesAddedLater: persons are also compared under the principal
// rules in force at the approval, so a grant requested (or approved) before a
// person rule existed is protected by it too.
func TestPersonRulesAddedLater(t *testing.T) {
	rules := map[string]string{}
	e := newEnv(t, func(o *Options) {
		o.ApprovalsRequired = 2
		o.PersonOf = func(id string) string { return rules[id] }
	})
	erinToken := identity.Principal{ID: "erin@example.org", Kind: identity.KindHuman, Groups: []string{"sre", "sre-leads"}, Authn: identity.AuthnJWT}
	carolToken := identity.Principal{ID: "carol@example.org", Kind: identity.KindHuman, Groups: []string{"sre", "sre-leads"}, Authn: identity.AuthnJWT}
	g := e.request(lead1Requester, GrantRequest{Reason: "INC-8"}) // no person rules yet
	e.approve(lead1, g.ID)                                        // carol's certificate

	// Now the rules say who is who.
	rules["erin@example.org"] = lead1Requester.ID
	rules["carol@example.org"] = lead1.ID
	_, err := e.store.Approve(testCtx(t), erinToken, g.ID, "")
	wantErr(t, "approval by the requester's token under later rules", err, ErrSelfApproval, "you requested")
	_, err = e.store.Approve(testCtx(t), carolToken, g.ID, "")
	wantErr(t, "second approval by the first approver's token under later rules", err, ErrAlreadyApproved, "you already approved")
	if got, _ := e.store.Get(g.ID); got.State != StatePending || len(got.Approvals) != 1 {
		t.Errorf("grant %+v, want pending with one approval", got)
	}
}

// TestApprovalLinkedToRequesterLater: an approval accepted before a person rule
// linked the approver's id to the requester stops counting once the rule exists.
func TestApprovalLinkedToRequesterLater(t *testing.T) {
	rules := map[string]string{}
	e := newEnv(t, func(o *Options) {
		o.ApprovalsRequired = 2
		o.PersonOf = func(id string) string { return rules[id] }
	})
	erinToken := identity.Principal{ID: "erin@example.org", Kind: identity.KindHuman, Groups: []string{"sre", "sre-leads"}, Authn: identity.AuthnJWT}
	g := e.request(lead1Requester, GrantRequest{Reason: "INC-9"})
	e.approve(erinToken, g.ID) // no rule links the token to erin's certificate yet
	rules["erin@example.org"] = lead1Requester.ID

	got := e.approve(lead1, g.ID)
	if got.State != StatePending {
		t.Fatalf("after the requester's own (token) approval and one other: %s, want pending", got.State)
	}
	if recs := e.records(g.ID); recs[len(recs)-1].Detail != "approved: 1 of 2" {
		t.Errorf("last record %q, want the counted approvals (1 of 2)", recs[len(recs)-1].Detail)
	}
	if got := e.approve(lead2, g.ID); got.State != StateActive {
		t.Errorf("after a second other approver: %s, want active", got.State)
	}
}

func TestPendingLapses(t *testing.T) {
	e := newEnv(t, nil)
	g := e.request(alice, GrantRequest{Reason: "INC-5", Duration: 5 * time.Minute})
	if !g.ApproveBy.Equal(g.Created.Add(time.Hour)) {
		t.Fatalf("ApproveBy = %s, want created + max_duration", g.ApproveBy)
	}
	e.clock.Advance(time.Hour)
	_, err := e.store.Approve(testCtx(t), lead1, g.ID, "")
	wantErr(t, "Approve after the approval window", err, ErrWrongState, "is expired")
	if err := e.store.Sweep(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	recs := e.records(g.ID)
	if got := recs[len(recs)-1].Detail; !strings.HasPrefix(got, "expired: not approved within 1h0m0s") {
		t.Errorf("last record %q, want the lapse recorded", got)
	}
}

func TestRestartKeepsGrants(t *testing.T) {
	e := newEnv(t, nil)
	long := e.request(alice, GrantRequest{Reason: "INC-6 long", Duration: time.Hour, Scope: []string{"/etcdserverpb.KV/*"}})
	e.approve(lead1, long.ID)
	short := e.request(alice, GrantRequest{Reason: "INC-6 short", Duration: time.Minute, Scope: []string{"/etcdserverpb.Maintenance/*"}})
	e.approve(lead1, short.ID)
	pending := e.request(bob, GrantRequest{Reason: "INC-6 pending"})

	e.restart()
	for _, id := range []string{long.ID, short.ID, pending.ID} {
		if _, err := e.store.Get(id); err != nil {
			t.Errorf("after restart, Get(%s) = %v", id, err)
		}
	}
	if a, ok := e.store.Active(alice.ID, kvMethod, e.clock.Now()); !ok || a.ID != long.ID {
		t.Errorf("after restart, Active(KV) = %+v, %v; want %s", a, ok, long.ID)
	}

	// The short grant runs out while the proxy is down: the next start records it.
	e.close()
	e.clock.Advance(2 * time.Minute)
	e.open()
	if got, _ := e.store.Get(short.ID); got.State != StateExpired {
		t.Errorf("grant that expired while stopped: state %s, want expired", got.State)
	}
	if got := events(e.records(short.ID)); got[len(got)-1] != "expired" {
		t.Errorf("events of the short grant %q, want the expiry recorded at start", got)
	}
	if _, ok := e.store.Active(alice.ID, maintMethod, e.clock.Now()); ok {
		t.Error("Active(expired grant) after restart = true")
	}
	// Approving the pending one still works after two restarts.
	if g := e.approve(lead1, pending.ID); g.State != StateActive {
		t.Errorf("approve after restart: state %s, want active", g.State)
	}
}

// TestFailClosed: a change that cannot be audited does not happen.
func TestFailClosed(t *testing.T) {
	fa := &flakyAuditor{}
	e := newEnv(t, func(o *Options) { o.Audit = fa })
	fa.next = e.audit
	g := e.request(alice, GrantRequest{Reason: "INC-7", Scope: []string{"/etcdserverpb.KV/*"}})

	fa.failing.Store(true)
	_, err := e.store.Request(testCtx(t), bob, GrantRequest{Reason: "INC-7b"})
	wantErr(t, "Request with the audit log down", err, ErrUnavailable, "disk gone")
	_, err = e.store.Approve(testCtx(t), lead1, g.ID, "")
	wantErr(t, "Approve with the audit log down", err, ErrUnavailable, "audit log unavailable")
	if _, ok := e.store.Active(alice.ID, kvMethod, e.clock.Now()); ok {
		t.Error("an approval that was not audited activated the grant")
	}
	if got, _ := e.store.List(""); len(got) != 1 || got[0].State != StatePending || len(got[0].Approvals) != 0 {
		t.Errorf("grants after failed changes: %+v; want only the first, pending", got)
	}

	fa.failing.Store(false)
	e.restart() // nothing of the failed changes was persisted either
	if got, _ := e.store.List(""); len(got) != 1 || got[0].State != StatePending {
		t.Errorf("grants after restart: %+v; want only the first, pending", got)
	}
}

func TestList(t *testing.T) {
	e := newEnv(t, nil)
	a := e.request(alice, GrantRequest{Reason: "one", Duration: time.Minute})
	e.clock.Advance(time.Second)
	b := e.request(bob, GrantRequest{Reason: "two"})
	e.approve(lead1, a.ID)
	e.clock.Advance(2 * time.Minute) // a expires, unswept
	tests := []struct {
		state State
		want  []string
	}{
		{"", []string{a.ID, b.ID}},
		{StateExpired, []string{a.ID}},
		{StatePending, []string{b.ID}},
		{StateActive, nil},
	}
	for _, tt := range tests {
		gs, err := e.store.List(tt.state)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, g := range gs {
			got = append(got, g.ID)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("List(%q) = %q, want %q", tt.state, got, tt.want)
		}
	}
	if _, err := e.store.List("bogus"); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("List(bogus) = %v, want ErrInvalidRequest", err)
	}
}

// TestSweeperRecordsExpiry: the running sweeper notices an expired grant
// soon after Active refused it, without the test sleeping.
func TestSweeperRecordsExpiry(t *testing.T) {
	notes := make(chanNotifier, 16)
	e := newEnv(t, func(o *Options) {
		o.ApprovalsRequired = 0
		o.ApproverGroups = nil
		o.Notifier = notes
		o.SweepInterval = time.Hour
	})
	e.store.Start()
	g := e.request(alice, GrantRequest{Reason: "INC-8", Duration: time.Minute})
	for range 2 { // requested, activated
		<-notes
	}
	e.clock.Advance(time.Minute)
	if _, ok := e.store.Active(alice.ID, kvMethod, e.clock.Now()); ok {
		t.Fatal("Active at expiry = true")
	}
	select {
	case n := <-notes:
		if n.Event != EventExpired || n.Grant.ID != g.ID || n.Grant.State != StateExpired {
			t.Errorf("notification %+v, want %s expired", n, g.ID)
		}
	case <-testCtx(t).Done():
		t.Fatal("the sweeper did not record the expiry")
	}
}

func TestActiveDoesNotAllocate(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ApprovalsRequired = 0; o.ApproverGroups = nil })
	e.request(alice, GrantRequest{Reason: "INC-9", Scope: []string{"/etcdserverpb.Maintenance/*", "/etcdserverpb.KV/Range"}})
	now := e.clock.Now()
	tests := []struct {
		name, who, method string
		want              bool
	}{
		{"no grant", bob.ID, kvMethod, false},
		{"grant, out of scope", alice.ID, kvMethod, false},
		{"grant, in scope", alice.ID, maintMethod, true},
	}
	for _, tt := range tests {
		allocs := testing.AllocsPerRun(100, func() {
			if _, ok := e.store.Active(tt.who, tt.method, now); ok != tt.want {
				t.Fatalf("Active(%s) = %v, want %v", tt.name, ok, tt.want)
			}
		})
		if allocs != 0 {
			t.Errorf("Active(%s) allocates %.1f times per call, want 0", tt.name, allocs)
		}
	}
}

func BenchmarkActive(b *testing.B) {
	e := newEnv(b, func(o *Options) { o.ApprovalsRequired = 0; o.ApproverGroups = nil })
	e.request(alice, GrantRequest{Reason: "bench", Scope: []string{"/etcdserverpb.Maintenance/*"}})
	now := e.clock.Now()
	for _, bc := range []struct{ name, who, method string }{
		{"no-grant", bob.ID, kvMethod},
		{"grant-out-of-scope", alice.ID, kvMethod},
		{"grant-in-scope", alice.ID, maintMethod},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.store.Active(bc.who, bc.method, now)
			}
		})
	}
}

// FuzzGrantRequest: any request is either refused with ErrInvalidRequest or
// normalized into globs that path.Match accepts; Covers never panics.
func FuzzGrantRequest(f *testing.F) {
	f.Add("INC-1", "T-1", int64(time.Minute), "/etcdserverpb.KV/*", "/etcdserverpb.KV/Range")
	f.Add("", "", int64(0), "", "")
	f.Add("x", "", int64(-1), "/[", "/a/b")
	f.Add("x\x00", "\xff", int64(time.Hour+1), "/a/\\", "/a/\\")
	f.Fuzz(func(t *testing.T, reason, ticket string, dur int64, scope, method string) {
		r, err := GrantRequest{Reason: reason, Ticket: ticket, Duration: time.Duration(dur), Scope: []string{scope}}.normalize(time.Hour)
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("normalize error %v does not wrap ErrInvalidRequest", err)
			}
			return
		}
		if r.Reason == "" || r.Duration <= 0 || r.Duration > time.Hour {
			t.Fatalf("normalize accepted %+v", r)
		}
		for _, p := range r.Scope {
			if _, err := path.Match(p, method); err != nil {
				t.Fatalf("accepted scope %q is not a valid glob: %v", p, err)
			}
		}
		g := Grant{Scope: r.Scope}
		g.Covers(method)
	})
}
