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
)

// HeaderPrincipal is set on every forwarded call to the authenticated principal id,
// for the upstream's own logs. Inbound values are always discarded.
const HeaderPrincipal = "x-ztp-principal"

// clientStreamDesc opens every upstream call as a bidi stream: at the wire level all
// four RPC kinds are the same HTTP/2 stream, and the forwarder must not need to know
// which one a method is.
var clientStreamDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

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
	first := &frame{}
	firstErr := ss.RecvMsg(first)
	if firstErr != nil && !errors.Is(firstErr, io.EOF) {
		return firstErr
	}

	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	outCtx := metadata.NewOutgoingContext(ctx, outgoingMetadata(ss.Context()))
	cs, err := up.conn.NewStream(outCtx, clientStreamDesc, method, grpc.ForceCodecV2(rawCodec{}))
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
			err := pumpToUpstream(ss, cs, first, firstErr != nil)
			toUpstream <- err
			if err != nil {
				cancel() // a later message refused, or the client gone: abandon the upstream call
			}
		}()
		err := pumpToClient(cs, ss)
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

	toUpstream := make(chan error, 1)
	toClient := make(chan error, 1)
	go func() { toUpstream <- pumpToUpstream(ss, cs, first, firstErr != nil) }()
	go func() { toClient <- pumpToClient(cs, ss) }()

	for {
		select {
		case err := <-toUpstream:
			if err == nil {
				// The client half-closed (or the upstream stopped reading); the
				// upstream's answer decides the call.
				toUpstream = nil
				continue
			}
			// The pipeline refused a later message, or the client went away:
			// abandon the upstream call and report why.
			cancel()
			<-toClient
			return err
		case err := <-toClient:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// pumpToUpstream copies client messages to the upstream. It returns nil when the
// client half-closed or the upstream stopped accepting messages (its status then
// arrives on the other pump), and an error when the pipeline or client failed.
func pumpToUpstream(ss grpc.ServerStream, cs grpc.ClientStream, first *frame, eof bool) error {
	if eof {
		return cs.CloseSend()
	}
	f := first
	for {
		if err := cs.SendMsg(f); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		f = &frame{}
		if err := ss.RecvMsg(f); err != nil {
			if errors.Is(err, io.EOF) {
				return cs.CloseSend()
			}
			return err
		}
	}
}

// pumpToClient copies the upstream's header, messages and trailer to the client and
// returns the upstream's final status (io.EOF for OK).
func pumpToClient(cs grpc.ClientStream, ss grpc.ServerStream) error {
	// Header fails only when the stream ended without headers; RecvMsg below then
	// returns the real status.
	if md, err := cs.Header(); err == nil && md != nil {
		if err := ss.SendHeader(md); err != nil {
			return err
		}
	}
	for {
		f := &frame{}
		if err := cs.RecvMsg(f); err != nil {
			ss.SetTrailer(cs.Trailer())
			return err
		}
		if err := ss.SendMsg(f); err != nil {
			return err
		}
	}
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
