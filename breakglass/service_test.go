package breakglass

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/identity"
)

func as(t *testing.T, p identity.Principal) context.Context {
	return identity.NewContext(testCtx(t), p)
}

func TestServiceCodes(t *testing.T) {
	e := newEnv(t, nil)
	svc := NewService(e.store)
	pending, err := svc.RequestGrant(as(t, alice), &ztpv1.RequestGrantRequest{Reason: "INC-11", Ticket: "INC-11", Duration: durationpb.New(20 * time.Minute), Scope: []string{"/etcdserverpb.KV/*"}})
	if err != nil {
		t.Fatalf("RequestGrant: %v", err)
	}
	if pending.GetState() != "pending" || pending.GetDuration().AsDuration() != 20*time.Minute || pending.GetApprovalsRequired() != 1 ||
		pending.GetCreated() == nil || pending.GetExpires() != nil {
		t.Errorf("RequestGrant = %v; want pending, 20m, 1 approval required, created set, no expiry", pending)
	}
	denied, _ := svc.RequestGrant(as(t, bob), &ztpv1.RequestGrantRequest{Reason: "INC-12"})
	if _, err := svc.DenyGrant(as(t, lead1), &ztpv1.GrantAction{Id: denied.GetId()}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"no principal in context", func() error {
			_, err := svc.ListGrants(testCtx(t), &ztpv1.ListGrantsRequest{})
			return err
		}, codes.Unauthenticated, "unauthenticated"},
		{"automation requests", func() error {
			_, err := svc.RequestGrant(as(t, deployer), &ztpv1.RequestGrantRequest{Reason: "x"})
			return err
		}, codes.PermissionDenied, "only humans may request"},
		{"no reason", func() error {
			_, err := svc.RequestGrant(as(t, alice), &ztpv1.RequestGrantRequest{})
			return err
		}, codes.InvalidArgument, "a reason is required"},
		{"duration above the maximum", func() error {
			_, err := svc.RequestGrant(as(t, alice), &ztpv1.RequestGrantRequest{Reason: "x", Duration: durationpb.New(2 * time.Hour)})
			return err
		}, codes.InvalidArgument, "exceeds breakglass.max_duration"},
		{"negative duration", func() error {
			_, err := svc.RequestGrant(as(t, alice), &ztpv1.RequestGrantRequest{Reason: "x", Duration: durationpb.New(-time.Minute)})
			return err
		}, codes.InvalidArgument, "positive"},
		{"self-approval", func() error {
			_, err := svc.ApproveGrant(as(t, lead1Requester), &ztpv1.GrantAction{Id: mustRequest(t, svc, lead1Requester)})
			return err
		}, codes.PermissionDenied, "self-approval refused"},
		{"approval of a denied grant", func() error {
			_, err := svc.ApproveGrant(as(t, lead2), &ztpv1.GrantAction{Id: denied.GetId()})
			return err
		}, codes.FailedPrecondition, "is denied"},
		{"double approval", func() error {
			id := mustRequest(t, svc, alice)
			// Two approvals needed is not configured, so the first activates;
			// the second is refused as the grant is no longer pending.
			if _, err := svc.ApproveGrant(as(t, lead1), &ztpv1.GrantAction{Id: id}); err != nil {
				return err
			}
			_, err := svc.ApproveGrant(as(t, lead1), &ztpv1.GrantAction{Id: id})
			return err
		}, codes.FailedPrecondition, "is active"},
		{"unknown grant", func() error {
			_, err := svc.GetGrant(as(t, alice), &ztpv1.GrantAction{Id: "bg-unknown"})
			return err
		}, codes.NotFound, "bg-unknown"},
		{"no id", func() error {
			_, err := svc.RevokeGrant(as(t, alice), &ztpv1.GrantAction{})
			return err
		}, codes.InvalidArgument, "grant id is required"},
		{"unknown state filter", func() error {
			_, err := svc.ListGrants(as(t, alice), &ztpv1.ListGrantsRequest{State: "open"})
			return err
		}, codes.InvalidArgument, "unknown state"},
		{"revoke by a stranger", func() error {
			_, err := svc.RevokeGrant(as(t, bob), &ztpv1.GrantAction{Id: pending.GetId()})
			return err
		}, codes.PermissionDenied, "only the requester"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Errorf("%s: %v %q, want %v containing %q", tt.name, st.Code(), st.Message(), tt.code, tt.msg)
			}
		})
	}

	// Approve, then list active: the approval and expiry are in the response.
	g, err := svc.ApproveGrant(as(t, lead1), &ztpv1.GrantAction{Id: pending.GetId(), Comment: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	if g.GetState() != "active" || len(g.GetApprovals()) != 1 || g.GetApprovals()[0].GetComment() != "ok" ||
		!g.GetExpires().AsTime().Equal(e.clock.Now().Add(20*time.Minute)) {
		t.Errorf("ApproveGrant = %v; want active with lead1's approval, expiring in 20m", g)
	}
	e.clock.Advance(20 * time.Minute)
	list, err := svc.ListGrants(as(t, bob), &ztpv1.ListGrantsRequest{State: "expired"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, lg := range list.GetGrants() {
		found = found || lg.GetId() == pending.GetId()
	}
	if !found {
		t.Errorf("ListGrants(expired) = %v; want %s", list, pending.GetId())
	}
	// Listing recorded the expiry.
	recs := e.records(pending.GetId())
	if got := events(recs); got[len(got)-1] != "expired" {
		t.Errorf("events %q; want the listing to have recorded the expiry", got)
	}
}

func mustRequest(t *testing.T, svc *Service, p identity.Principal) string {
	t.Helper()
	g, err := svc.RequestGrant(as(t, p), &ztpv1.RequestGrantRequest{Reason: "test"})
	if err != nil {
		t.Fatalf("RequestGrant(%s): %v", p.ID, err)
	}
	return g.GetId()
}
