package proxy

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// frame is one gRPC message exactly as it arrived on the wire.
type frame struct {
	data []byte
}

// rawCodec passes proxied message bytes through untouched, and encodes the
// proxy's own control-API messages with the regular proto codec. It reports the
// name "proto" so that the content-type stays application/grpc(+proto) on both
// legs.
type rawCodec struct{}

var (
	_          encoding.CodecV2 = rawCodec{}
	protoCodec                  = encoding.GetCodecV2(proto.Name)
)

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*frame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f.data)}, nil
	}
	return protoCodec.Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*frame); ok {
		f.data = data.Materialize()
		return nil
	}
	return protoCodec.Unmarshal(data, v)
}

func (rawCodec) Name() string { return proto.Name }
