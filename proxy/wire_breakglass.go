package proxy

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/breakglass"
	"github.com/ztp-dev/ztp/identity"
)

// wireBreakglass opens the grant store in the audit file, makes the pipeline
// consult it for every message, serves ztp.v1.BreakGlass and, when
// breakglass.notify_webhook is set, starts the notifier. Changes to the
// breakglass section take effect at the next start, not on reload.
func (s *Server) wireBreakglass(ctx context.Context) error {
	bc := s.cfg.Breakglass
	if !bc.Enabled {
		// Secure default: no breakglass section, no grants. Requests get a clear
		// refusal rather than "unknown service".
		ztpv1.RegisterBreakGlassServer(s.grpc, breakglassDisabled{})
		return nil
	}
	opts := breakglass.Options{
		MaxDuration:       bc.MaxDuration,
		ApprovalsRequired: bc.ApprovalsRequired,
		ApproverGroups:    bc.ApproverGroups,
		MaxPending:        bc.MaxPendingPerPerson,
		Audit:             s.store,
		Now:               s.now,
		AuditTimeout:      s.opts.AuditTimeout,
		Logger:            s.log,
	}
	if a, ok := s.pipeline.auth.(*identity.Authenticator); ok {
		opts.PersonOf = a.PersonOf // the rules in force at each approval (SIGHUP reloads them)
	}
	if bc.NotifyWebhook != "" {
		wh, err := breakglass.NewWebhook(breakglass.WebhookOptions{URL: bc.NotifyWebhook, Audit: s.store, Now: s.now, Logger: s.log})
		if err != nil {
			return fmt.Errorf("breakglass.notify_webhook: %w", err)
		}
		// Registered before the store's stop, so it runs after it (stops run
		// in reverse): no state change can be notified once it drained.
		s.stops = append(s.stops, wh.Stop)
		opts.Notifier = wh
	}
	store, err := breakglass.Open(ctx, s.store.DB(), opts)
	if err != nil {
		return fmt.Errorf("breakglass: %w", err)
	}
	store.Start()
	s.stops = append(s.stops, store.Stop)
	if bc.ApprovalsRequired == 0 {
		s.log.Warn("break-glass is self-service: any human can activate a grant without approval (breakglass.approvals_required: 0)")
	}
	s.pipeline.grants = grantFinder{store}
	s.metrics.GaugeFunc("ztp_breakglass_active_grants", "Break-glass grants currently active.", func() float64 {
		active, err := store.List(breakglass.StateActive)
		if err != nil {
			return 0
		}
		return float64(len(active))
	})
	ztpv1.RegisterBreakGlassServer(s.grpc, breakglass.NewService(store))
	return nil
}

// grantFinder adapts the grant store to the pipeline; the conversion copies
// four fields and allocates nothing.
type grantFinder struct{ s *breakglass.Store }

func (f grantFinder) ActiveGrant(principalID, method string, now time.Time) (GrantInfo, bool) {
	a, ok := f.s.Active(principalID, method, now)
	if !ok {
		return GrantInfo{}, false
	}
	return GrantInfo{ID: a.ID, Reason: a.Reason, Ticket: a.Ticket, Expires: a.Expires}, true
}

// breakglassDisabled answers the control API when the config has no breakglass
// section.
type breakglassDisabled struct {
	ztpv1.UnimplementedBreakGlassServer
}

var errBreakglassDisabled = status.Error(codes.FailedPrecondition, "ztp: break-glass is not enabled on this proxy (the config has no breakglass: section)")

func (breakglassDisabled) RequestGrant(context.Context, *ztpv1.RequestGrantRequest) (*ztpv1.Grant, error) {
	return nil, errBreakglassDisabled
}
func (breakglassDisabled) ApproveGrant(context.Context, *ztpv1.GrantAction) (*ztpv1.Grant, error) {
	return nil, errBreakglassDisabled
}
func (breakglassDisabled) DenyGrant(context.Context, *ztpv1.GrantAction) (*ztpv1.Grant, error) {
	return nil, errBreakglassDisabled
}
func (breakglassDisabled) RevokeGrant(context.Context, *ztpv1.GrantAction) (*ztpv1.Grant, error) {
	return nil, errBreakglassDisabled
}
func (breakglassDisabled) GetGrant(context.Context, *ztpv1.GrantAction) (*ztpv1.Grant, error) {
	return nil, errBreakglassDisabled
}
func (breakglassDisabled) ListGrants(context.Context, *ztpv1.ListGrantsRequest) (*ztpv1.ListGrantsResponse, error) {
	return nil, errBreakglassDisabled
}
