package decode_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/ztp-dev/ztp/decode"
)

func ExampleToMap() {
	req := &grpc_testing.SimpleRequest{
		ResponseType: grpc_testing.PayloadType_COMPRESSABLE,
		ResponseSize: 42,
		Payload:      &grpc_testing.Payload{Body: []byte("foo")},
	}
	m, err := decode.ToMap(req.ProtoReflect())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%T\n", m["responseSize"])
	out, _ := json.Marshal(m)
	fmt.Println(string(out))
	// Fields the request left at their zero value are there too, as the
	// server will read them.
	// Output:
	// json.Number
	// {"fillGrpclbRouteType":false,"fillOauthScope":false,"fillServerId":false,"fillUsername":false,"payload":{"body":"Zm9v","type":"COMPRESSABLE"},"responseSize":42,"responseType":"COMPRESSABLE"}
}

func ExampleDecoder_Decode() {
	// A protoset as `protoc --include_imports --descriptor_set_out` writes it.
	set := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(grpc_testing.File_grpc_testing_empty_proto),
		protodesc.ToFileDescriptorProto(grpc_testing.File_grpc_testing_messages_proto),
		protodesc.ToFileDescriptorProto(grpc_testing.File_grpc_testing_test_proto),
	}}
	dir, err := os.MkdirTemp("", "protoset")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "test.protoset")
	b, _ := proto.Marshal(set)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		fmt.Println(err)
		return
	}

	ps, err := decode.LoadProtoset(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	d := decode.NewDecoder(ps)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// The bytes a client sent, as the proxy sees them on the wire.
	wire, _ := proto.Marshal(&grpc_testing.StreamingOutputCallRequest{
		ResponseParameters: []*grpc_testing.ResponseParameters{{Size: 10}},
	})
	req, info, ok := d.Decode(ctx, "/grpc.testing.TestService/FullDuplexCall", wire)
	out, _ := json.Marshal(req)
	fmt.Println(ok, info.ClientStreaming, info.ServerStreaming, string(out))

	_, info, ok = d.Decode(ctx, "/grpc.testing.TestService/NoSuchMethod", wire)
	fmt.Println(ok, info.Known)
	// Output:
	// true true true {"responseParameters":[{"intervalUs":0,"size":10}],"responseType":"COMPRESSABLE"}
	// false false
}
