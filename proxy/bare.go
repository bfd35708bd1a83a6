package proxy

import (
	"google.golang.org/grpc"
)

// NewBareForwarder returns a gRPC server that forwards every call to conn
// with the proxy's own transparent forwarder and pass-through codec, and does
// nothing else: no authentication, no decoding, no policy, no rate limit and no
// audit. It exists only to measure the forwarder's share of the proxy's cost
// (cmd/ztp-bench compares it with calling the backend directly and with the
// full pipeline); it must never stand in front of a production API, since
// nothing it forwards is authorized or audited.
//
// Every method is routed to conn. The forwarder still strips
// authorization and x-ztp-* headers, so the bytes on the wire match what the
// full proxy sends, minus the x-ztp-principal header it adds. opts are
// appended to the server's options (e.g. grpc.Creds to measure TLS). The
// caller serves the server, and closes conn after stopping it.
func NewBareForwarder(conn *grpc.ClientConn, opts ...grpc.ServerOption) *grpc.Server {
	up := &upstream{name: conn.Target(), conn: conn}
	fwd := &forwarder{route: func(string) *upstream { return up }}
	return grpc.NewServer(append([]grpc.ServerOption{
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.UnknownServiceHandler(fwd.handle),
		grpc.NumStreamWorkers(streamWorkers), // as the full proxy
	}, opts...)...)
}
