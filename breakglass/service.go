package breakglass

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/identity"
)

// Service serves ztp.v1.BreakGlass from a Store. The proxy authenticates,
// authorizes (coarsely) and audits each call before it reaches a handler and
// puts the caller in the context (identity.NewContext); the Store makes the
// fine-grained checks itself, so a mistake in the coarse rules cannot let
// automation request or let a requester approve their own grant.
type Service struct {
	ztpv1.UnimplementedBreakGlassServer
	store *Store
}

// NewService returns the control-API service for s.
func NewService(s *Store) *Service { return &Service{store: s} }

func caller(ctx context.Context) (identity.Principal, error) {
	p, ok := identity.PrincipalFromContext(ctx)
	if !ok {
		return identity.Principal{}, status.Error(codes.Unauthenticated, "ztp: break-glass: unauthenticated call")
	}
	return p, nil
}

// RequestGrant requests a grant for the caller.
func (s *Service) RequestGrant(ctx context.Context, r *ztpv1.RequestGrantRequest) (*ztpv1.Grant, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	req := GrantRequest{Reason: r.GetReason(), Ticket: r.GetTicket(), Scope: r.GetScope()}
	if d := r.GetDuration(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, toStatus(errors.Join(ErrInvalidRequest, err))
		}
		req.Duration = d.AsDuration()
		if req.Duration <= 0 {
			return nil, status.Error(codes.InvalidArgument, "ztp: break-glass: duration must be positive")
		}
	}
	g, err := s.store.Request(ctx, p, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return toProto(g), nil
}

// ApproveGrant approves a pending grant.
func (s *Service) ApproveGrant(ctx context.Context, a *ztpv1.GrantAction) (*ztpv1.Grant, error) {
	return s.act(ctx, a, s.store.Approve)
}

// DenyGrant denies a pending grant.
func (s *Service) DenyGrant(ctx context.Context, a *ztpv1.GrantAction) (*ztpv1.Grant, error) {
	return s.act(ctx, a, s.store.Deny)
}

// RevokeGrant revokes a pending or active grant.
func (s *Service) RevokeGrant(ctx context.Context, a *ztpv1.GrantAction) (*ztpv1.Grant, error) {
	return s.act(ctx, a, s.store.Revoke)
}

func (s *Service) act(ctx context.Context, a *ztpv1.GrantAction, fn func(context.Context, identity.Principal, string, string) (Grant, error)) (*ztpv1.Grant, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if a.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "ztp: break-glass: grant id is required")
	}
	g, err := fn(ctx, p, a.GetId(), a.GetComment())
	if err != nil {
		return nil, toStatus(err)
	}
	return toProto(g), nil
}

// GetGrant returns one grant.
func (s *Service) GetGrant(ctx context.Context, a *ztpv1.GrantAction) (*ztpv1.Grant, error) {
	if _, err := caller(ctx); err != nil {
		return nil, err
	}
	g, err := s.store.Get(a.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return toProto(g), nil
}

// ListGrants lists grants, optionally in one state. It also records the
// expiry of grants that ran out, so the listing and the trail agree.
func (s *Service) ListGrants(ctx context.Context, r *ztpv1.ListGrantsRequest) (*ztpv1.ListGrantsResponse, error) {
	if _, err := caller(ctx); err != nil {
		return nil, err
	}
	st, err := ParseState(r.GetState())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.store.Sweep(ctx); err != nil {
		// The listing is still right (states are computed at now); only the
		// trail lags, and the sweeper retries.
		s.store.log.Warn("break-glass sweep during list failed", "err", err)
	}
	gs, err := s.store.List(st)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ztpv1.ListGrantsResponse{Grants: make([]*ztpv1.Grant, len(gs))}
	for i, g := range gs {
		resp.Grants[i] = toProto(g)
	}
	return resp, nil
}

// toStatus maps the package's errors to gRPC codes; the message is the
// error's text, written for the person at the terminal.
func toStatus(err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, ErrInvalidRequest):
		code = codes.InvalidArgument
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrNotAllowed), errors.Is(err, ErrSelfApproval):
		code = codes.PermissionDenied
	case errors.Is(err, ErrAlreadyApproved), errors.Is(err, ErrWrongState):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrTooManyPending):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrUnavailable):
		code = codes.Unavailable
	}
	return status.Error(code, "ztp: "+err.Error())
}

// toProto renders g for the control API.
func toProto(g Grant) *ztpv1.Grant {
	pg := &ztpv1.Grant{
		Id:                g.ID,
		Requester:         g.Requester,
		Reason:            g.Reason,
		Ticket:            g.Ticket,
		Scope:             g.Scope,
		Duration:          durationpb.New(g.Duration),
		State:             string(g.State),
		ApprovalsRequired: int32(g.ApprovalsRequired),
		Created:           ts(g.Created),
		Activated:         ts(g.Activated),
		Expires:           ts(g.Expires),
		Ended:             ts(g.Ended),
		EndedBy:           g.EndedBy,
	}
	for _, a := range g.Approvals {
		pg.Approvals = append(pg.Approvals, &ztpv1.Approval{Approver: a.Approver, Time: ts(a.Time), Comment: a.Comment})
	}
	return pg
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
