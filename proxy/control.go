package proxy

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/identity"
	"github.com/ztp-dev/ztp/internal/version"
	"github.com/ztp-dev/ztp/policy"
)

// controlPrefix starts the full method names of the proxy's own control API.
// Those calls are served here, never forwarded.
const controlPrefix = "/ztp.v1."

// healthPrefix starts the standard gRPC health service, which the proxy serves
// itself (reporting its own readiness) for every authenticated caller.
const healthPrefix = "/grpc.health.v1.Health/"

// isControl reports whether method is served by the proxy itself.
func isControl(method string) bool {
	return strings.HasPrefix(method, controlPrefix) || strings.HasPrefix(method, healthPrefix)
}

// controlAuthz holds the built-in authorization rules of the control API (README,
// "Configuration reference": audit.readers, breakglass.approver_groups): who may
// export the audit log and who may act on break-glass grants. Finer checks
// (self-approval, who may revoke) belong to the services.
type controlAuthz struct {
	auditReaders   []string
	approverGroups []string
}

// authorize returns "" when p may call method, else the reason it may not.
func (a controlAuthz) authorize(method string, p identity.Principal) string {
	switch method {
	case "/ztp.v1.Audit/Export", "/ztp.v1.Audit/Verify", "/ztp.v1.Audit/LatestCheckpoint":
		if !p.InGroup(a.auditReaders...) {
			return "audit export and verify need membership in a group of audit.readers"
		}
	case "/ztp.v1.BreakGlass/RequestGrant":
		if p.Kind != "human" {
			return "only humans may request break-glass"
		}
	case "/ztp.v1.BreakGlass/ApproveGrant", "/ztp.v1.BreakGlass/DenyGrant":
		if p.Kind != "human" || !p.InGroup(a.approverGroups...) {
			return "only humans in breakglass.approver_groups may approve or deny grants"
		}
	case "/ztp.v1.BreakGlass/RevokeGrant", // the service checks requester-or-approver
		"/ztp.v1.BreakGlass/GetGrant",
		"/ztp.v1.BreakGlass/ListGrants",
		"/ztp.v1.Policy/Version",
		"/ztp.v1.RateLimit/Status",
		"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch", "/grpc.health.v1.Health/List":
	default:
		return errUnknownControl
	}
	return ""
}

// errUnknownControl is authorize's answer for a method the control API does not
// serve; the caller gets UNIMPLEMENTED (after the refusal is audited).
const errUnknownControl = "unknown control method"

// controlUnary authenticates, authorizes and audits unary control-API calls.
func (p *Pipeline) controlUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	c, ctx, err := p.controlStart(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	defer c.live.close()
	if err := p.controlDecide(ctx, c, req); err != nil {
		return nil, err
	}
	resp, err := handler(ctx, req)
	err = c.live.status(err)
	p.controlEnd(ctx, c, err)
	p.metrics.Calls.WithLabelValues("ztp", c.method, codeName(status.Code(err))).Inc()
	return resp, err
}

// controlStream does the same for streaming control-API calls; the request is
// audited when the handler reads it.
func (p *Pipeline) controlStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	c, ctx, err := p.controlStart(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	defer c.live.close()
	if err := p.admitStream(ctx, c); err != nil {
		return err
	}
	err = c.live.status(handler(srv, &controlServerStream{ServerStream: ss, ctx: ctx, p: p, c: c}))
	p.controlEnd(ctx, c, err)
	p.metrics.Calls.WithLabelValues("ztp", c.method, codeName(status.Code(err))).Inc()
	return err
}

func (p *Pipeline) controlStart(ctx context.Context, method string) (*call, context.Context, error) {
	c := &call{start: p.now(), method: method, peer: peerAddr(ctx)}
	c.service, c.rpc, _ = splitMethod(method)
	pr, gen, err := p.authenticate(ctx)
	if err != nil {
		p.refuseUnauthenticated(ctx, c, err.Error())
		return nil, nil, status.Error(codes.Unauthenticated, "ztp: "+err.Error())
	}
	c.principal = pr
	c.readMetadata(ctx, p.headers)
	if reason := p.control.authorize(method, pr); reason != "" {
		p.refuse(ctx, c, &pr, reason)
		if reason == errUnknownControl {
			return nil, nil, status.Errorf(codes.Unimplemented, "ztp: unknown control method %s", method)
		}
		return nil, nil, status.Error(codes.PermissionDenied, policy.DeniedMessage([]string{reason}))
	}
	if err := p.controlRateLimit(ctx, c); err != nil {
		return nil, nil, err
	}
	ctx = p.watch(ctx, c, gen) // ends the call when the credential no longer counts
	return c, identity.NewContext(ctx, pr), nil
}

// controlDecide audits an authorized control request before it is served.
func (p *Pipeline) controlDecide(ctx context.Context, c *call, req any) error {
	idx := int(c.in.Add(1) - 1)
	rec := p.record(c, "request")
	rec.MessageIndex = idx
	if reason := c.credentialEnd(p.now()); reason != "" {
		return p.refuseEnded(ctx, c, rec, reason)
	}
	if m, ok := req.(proto.Message); ok {
		if b, err := protojson.Marshal(m); err == nil {
			rec.Request = b
			rec.RequestDecoded = true
		}
	}
	rec.Decision = policy.DecisionAllow
	rec.Reasons = []string{"control API: built-in authorization"}
	seq, err := p.append(ctx, rec)
	if err != nil {
		p.log.Error("audit append failed; refusing control call", "method", c.method, "err", err)
		return status.Error(codes.Unavailable, "ztp: audit log unavailable; request not served")
	}
	if idx == 0 {
		c.firstSeq = seq
	}
	return nil
}

func (p *Pipeline) controlEnd(ctx context.Context, c *call, err error) {
	if c.firstSeq != 0 {
		end := p.now()
		p.outcome(ctx, c, err, end)
	}
}

type controlServerStream struct {
	grpc.ServerStream
	ctx context.Context
	p   *Pipeline
	c   *call
}

func (s *controlServerStream) Context() context.Context { return s.ctx }

func (s *controlServerStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.p.controlDecide(s.ctx, s.c, m)
}

func (s *controlServerStream) SendMsg(m any) error {
	if err := s.p.sendAllowed(s.c); err != nil {
		return err
	}
	if err := s.ServerStream.SendMsg(m); err != nil {
		return err
	}
	s.c.out.Add(1)
	return nil
}

// policyService serves ztp.v1.Policy from the pipeline's active policy.
type policyService struct {
	ztpv1.UnimplementedPolicyServer
	p *Pipeline
}

func (s *policyService) Version(context.Context, *ztpv1.PolicyVersionRequest) (*ztpv1.PolicyVersionResponse, error) {
	a := s.p.active()
	build := version.Get()
	return &ztpv1.PolicyVersionResponse{
		Version:        a.eval.Version(),
		Mode:           string(s.p.mode),
		Loaded:         timestamppb.New(a.loaded),
		ServerVersion:  build.Version,
		ServerRevision: build.Revision,
	}, nil
}

// activePolicy is a loaded policy and when it became active.
type activePolicy struct {
	eval   Evaluator
	loaded time.Time
}
