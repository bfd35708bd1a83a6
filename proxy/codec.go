package proxy

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// frame is one gRPC message exactly as it arrived on the wire.
type frame struct {
	data []byte
}

// rawCodec passes message bytes through untouched. It reports the name "proto"
// so that the content-type stays application/grpc(+proto) on both legs.
type rawCodec struct{}

var _ encoding.CodecV2 = rawCodec{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("proxy: raw codec cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(f.data)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("proxy: raw codec cannot unmarshal into %T", v)
	}
	f.data = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
