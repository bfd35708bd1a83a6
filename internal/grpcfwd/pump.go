package grpcfwd

import (
	"errors"
	"io"

	"google.golang.org/grpc"
)

// StreamDesc opens every upstream call as a bidi stream: at the wire level all
// four RPC kinds are the same HTTP/2 stream, and a forwarder must not need to
// know which one a method is.
var StreamDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// PumpToUpstream copies client messages to the upstream, starting with first
// when the caller already received it (nil: the pump receives the first one
// itself; eof: the client half-closed before sending one). It returns nil when
// the client half-closed or the upstream stopped accepting messages (its
// status then arrives on PumpToClient), and an error when receiving from the
// client failed.
func PumpToUpstream(ss grpc.ServerStream, cs grpc.ClientStream, first *Frame, eof bool) error {
	if eof {
		return cs.CloseSend()
	}
	f := first
	for {
		if f == nil {
			f = &Frame{}
			if err := ss.RecvMsg(f); err != nil {
				if errors.Is(err, io.EOF) {
					return cs.CloseSend()
				}
				return err
			}
		}
		if err := cs.SendMsg(f); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		f = nil
	}
}

// PumpToClient copies the upstream's header, messages and trailer to the
// client and returns the upstream's final status (io.EOF for OK).
func PumpToClient(cs grpc.ClientStream, ss grpc.ServerStream) error {
	// Header fails only when the stream ended without headers; RecvMsg below then
	// returns the real status.
	if md, err := cs.Header(); err == nil && md != nil {
		if err := ss.SendHeader(md); err != nil {
			return err
		}
	}
	for {
		f := &Frame{}
		if err := cs.RecvMsg(f); err != nil {
			ss.SetTrailer(cs.Trailer())
			return err
		}
		if err := ss.SendMsg(f); err != nil {
			return err
		}
	}
}

// Splice runs both pumps until the call ends and returns what the server
// handler should return: nil when the upstream answered OK, the upstream's
// status otherwise, or the client-side error that ended the call. cancel must
// cancel cs's context: it is called to abandon the upstream call when the
// client side fails, before Splice waits for the upstream pump to return.
func Splice(ss grpc.ServerStream, cs grpc.ClientStream, first *Frame, eof bool, cancel func()) error {
	toUpstream := make(chan error, 1)
	toClient := make(chan error, 1)
	go func() { toUpstream <- PumpToUpstream(ss, cs, first, eof) }()
	go func() { toClient <- PumpToClient(cs, ss) }()

	for {
		select {
		case err := <-toUpstream:
			if err == nil {
				// The client half-closed (or the upstream stopped reading); the
				// upstream's answer decides the call.
				toUpstream = nil
				continue
			}
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
