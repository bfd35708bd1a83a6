package grpcfwd

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// Frame is one gRPC message exactly as it arrived on the wire.
type Frame struct {
	Data []byte
}

// Codec passes *Frame bytes through untouched and encodes every other message
// with the regular proto codec (a server's own services, such as ztp's control
// API, share the listener). It reports the name "proto" so that the
// content-type stays application/grpc(+proto) on both legs.
type Codec struct{}

var (
	_          encoding.CodecV2 = Codec{}
	protoCodec                  = encoding.GetCodecV2(proto.Name)
)

// Marshal implements encoding.CodecV2.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*Frame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f.Data)}, nil
	}
	return protoCodec.Marshal(v)
}

// Unmarshal implements encoding.CodecV2.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*Frame); ok {
		f.Data = data.Materialize()
		return nil
	}
	return protoCodec.Unmarshal(data, v)
}

// Name implements encoding.CodecV2.
func (Codec) Name() string { return proto.Name }
