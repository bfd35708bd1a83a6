package proxy

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ztp-dev/ztp/identity"
	"github.com/ztp-dev/ztp/ratelimit"
)

// VolumeMeters finds the response-volume rule (rate_limits with unit
// response_bytes or response_messages) that bounds a call's responses.
type VolumeMeters interface {
	// Meter returns nil when no rule applies.
	Meter(p identity.Principal, method string) *ratelimit.Meter
}

// callVolume is a call's response volume: the message bytes received from the
// client and sent to it (for the outcome record), and the meter charging what
// is sent.
type callVolume struct {
	bytesIn, bytesOut atomic.Int64
	// Used by SendMsg only, which grpc-go never runs concurrently on a stream.
	resolved bool
	meter    *ratelimit.Meter
}

func (v *callVolume) bytes() (in, out uint64) {
	return uint64(v.bytesIn.Load()), uint64(v.bytesOut.Load())
}

// chargeResponse returns the size of the response message m about to be sent
// (the frame's payload: its length on the wire without the 5-byte gRPC
// message header), having charged it to the call's response-volume rule. An
// error ends the call with RESOURCE_EXHAUSTED naming the rule; m is not sent.
//
// The rule is found at the first response, with the break-glass grant in
// force then, so a call that sends nothing costs nothing. With no rule the
// cost per message is a few branches (no clock read).
func (p *Pipeline) chargeResponse(s *stream, m any) (int, error) {
	n := 0
	if f, ok := m.(*frame); ok {
		n = len(f.Data)
	}
	if p.volume == nil {
		return n, nil
	}
	v := &s.c.volume
	var now time.Time // read once, and only when a rule or grant needs it
	if !v.resolved {
		v.resolved = true
		v.meter = p.volume.Meter(s.c.principal, s.c.method)
		if v.meter != nil && v.meter.Bypassable() && p.grants != nil {
			now = p.now()
			if _, ok := p.grants.ActiveGrant(s.c.principal.ID, s.c.method, now); ok {
				v.meter = nil
			}
		}
	}
	if v.meter == nil {
		return n, nil
	}
	if now.IsZero() {
		now = p.now()
	}
	ok, wait, reason := v.meter.Charge(n, now)
	if ok {
		return n, nil
	}
	p.metrics.RateLimited.WithLabelValues("response_volume").Inc()
	return n, exhausted(s.ctx, "response volume limit "+reason, wait)
}

// exhausted is the RESOURCE_EXHAUSTED status for a refusal by a rate limit,
// change budget or response-volume rule, telling the client when to retry:
// gRPC's retry pushback trailer and the message. A negative wait means that
// waiting cannot help.
func exhausted(ctx context.Context, reason string, wait time.Duration) error {
	if wait < 0 {
		// A negative pushback tells gRPC clients not to retry.
		grpc.SetTrailer(ctx, metadata.Pairs("grpc-retry-pushback-ms", "-1"))
		return status.Errorf(codes.ResourceExhausted, "ztp: %s; retrying will not help", reason)
	}
	// Rounded up: a client retrying at the announced time must find its token.
	ms := (wait + time.Millisecond - 1).Milliseconds()
	grpc.SetTrailer(ctx, metadata.Pairs("grpc-retry-pushback-ms", strconv.FormatInt(ms, 10)))
	return status.Errorf(codes.ResourceExhausted, "ztp: %s; retry in %s", reason, time.Duration(ms)*time.Millisecond)
}
