package decode

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

// EncodeJSON turns a request written in its protojson form (the shape Decode
// renders) into the wire bytes of the method's input message, resolving
// google.protobuf.Any and extensions the way Decode does: what ztpctl policy
// input makes of a hand-written request, and how the proxy sends a policy's
// effect query (ztp.query) to the upstream;
// unknown JSON keys are an error naming them, as protojson reports them.
func EncodeJSON(ctx context.Context, r Resolver, fullMethod string, js []byte) ([]byte, error) {
	md, err := r.FindMethod(ctx, fullMethod)
	if err != nil {
		return nil, err
	}
	types := typesFor(r, md)
	msg := dynamicpb.NewMessage(md.Input())
	if err := (protojson.UnmarshalOptions{Resolver: types}).Unmarshal(js, msg); err != nil {
		return nil, fmt.Errorf("%s: request is not a %s in protojson form: %w", fullMethod, md.Input().FullName(), err)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fullMethod, err)
	}
	return b, nil
}
