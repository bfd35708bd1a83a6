package proxy

import "github.com/ztp-dev/ztp/internal/grpcfwd"

// frame is one gRPC message exactly as it arrived on the wire.
type frame = grpcfwd.Frame

// rawCodec passes proxied message bytes through untouched, and encodes the
// proxy's own control-API messages with the regular proto codec.
type rawCodec = grpcfwd.Codec
