package proxy

import (
	"context"
	"errors"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ztp-dev/ztp/internal/grpcfwd"
)

// HeaderPrincipal is set on every forwarded call to the authenticated principal id,
// for the upstream's own logs. Inbound values are always discarded.
const HeaderPrincipal = "x-ztp-principal"

// forwarder is the transparent stream handler. It routes by method, copies frames
// both ways, and passes headers, trailers and the upstream's status through.
type forwarder struct {
	route func(fullMethod string) *upstream
}

func (f *forwarder) handle(_ any, ss grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "ztp: no method on stream")
	}
	// The proxy's own services are served here, never forwarded, whatever a
	// service glob in the config matches (grpc-go hands unknown methods of a
	// registered service to this handler too).
	if isControl(method) {
		return status.Errorf(codes.Unimplemented, "ztp: unknown control method %s", method)
	}
	up := f.route(method)
	if up == nil {
		return status.Errorf(codes.Unimplemented, "ztp: no upstream serves %s", method)
	}

	// Receive (and so let the pipeline decide and audit) the first message before
	// the upstream hears of the call at all: a refused call must not even open a
	// stream on the backend.
	first := &grpcfwd.Frame{}
	firstErr := ss.RecvMsg(first)
	if firstErr != nil && !errors.Is(firstErr, io.EOF) {
		return firstErr
	}

	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	outCtx := metadata.NewOutgoingContext(ctx, outgoingMetadata(ss.Context()))
	cs, err := up.conn.NewStream(outCtx, grpcfwd.StreamDesc, method, grpc.ForceCodecV2(grpcfwd.Codec{}))
	if err != nil {
		// The upstream could not be reached: say which, keep the code.
		st := status.Convert(err)
		return status.Errorf(st.Code(), "ztp: upstream %s: %s", up.name, st.Message())
	}

	// A unary call (known as such from the upstream's descriptors) needs one
	// goroutine, not two: the answer is copied down on this one. The message is
	// still sent up (and the client's half-close awaited) on its own goroutine,
	// so that max_unary_deadline ends a call whose client never half-closes.
	if c := callFromContext(ss.Context()); c != nil && c.unary() {
		toUpstream := make(chan error, 1)
		go func() {
			err := grpcfwd.PumpToUpstream(ss, cs, first, firstErr != nil)
			toUpstream <- err
			if err != nil {
				cancel() // a later message refused, or the client gone: abandon the upstream call
			}
		}()
		err := grpcfwd.PumpToClient(cs, ss)
		select {
		case uerr := <-toUpstream:
			if uerr != nil {
				return uerr
			}
		default:
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}

	// The pipeline refusing a later message, or the client going away, abandons
	// the upstream call (cancel) and is reported as the call's status.
	return grpcfwd.Splice(ss, cs, first, firstErr != nil, cancel)
}

// outgoingMetadata copies the client's metadata for the upstream, dropping what the
// proxy owns: credentials meant for the proxy, every x-ztp-* header (a client must
// not be able to speak for the proxy), and HTTP/2 pseudo-headers.
func outgoingMetadata(ctx context.Context) metadata.MD {
	in, _ := metadata.FromIncomingContext(ctx)
	out := make(metadata.MD, len(in)+1)
	for k, v := range in {
		if strippedHeader(k) {
			continue
		}
		out[k] = v
	}
	if c := callFromContext(ctx); c != nil {
		out[HeaderPrincipal] = []string{c.principal.ID}
	}
	return out
}

func strippedHeader(k string) bool {
	return k == "authorization" || strings.HasPrefix(k, "x-ztp-") || strings.HasPrefix(k, ":")
}
