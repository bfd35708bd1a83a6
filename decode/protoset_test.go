package decode

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
)

func TestLoadProtoset(t *testing.T) {
	path := writeFile(t, "grpc_testing.protoset", protosetBytes(t, grpc_testing.File_grpc_testing_test_proto))
	p, err := LoadProtoset(path)
	if err != nil {
		t.Fatalf("LoadProtoset(%s): %v", path, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md, err := p.FindMethod(ctx, "/grpc.testing.TestService/FullDuplexCall")
	if err != nil {
		t.Fatalf("FindMethod: %v", err)
	}
	if got, want := md.Input().FullName(), grpc_testing.File_grpc_testing_messages_proto.Messages().ByName("StreamingOutputCallRequest").FullName(); got != want {
		t.Errorf("FullDuplexCall input = %s, want %s", got, want)
	}
	if !md.IsStreamingClient() || !md.IsStreamingServer() {
		t.Errorf("FullDuplexCall streaming = %v/%v, want true/true", md.IsStreamingClient(), md.IsStreamingServer())
	}
	methods := p.Methods()
	if !slices.Contains(methods, "/grpc.testing.TestService/UnaryCall") || !slices.IsSorted(methods) {
		t.Errorf("Methods() = %v, want sorted and containing /grpc.testing.TestService/UnaryCall", methods)
	}
}

func TestLoadProtosetErrors(t *testing.T) {
	// A set holding test.proto without the messages.proto and empty.proto
	// it imports: what protoc writes without --include_imports.
	withoutDeps, err := proto.Marshal(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(grpc_testing.File_grpc_testing_test_proto),
	}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		name     string
		path     string
		want     error
		wantText string // a word of the reason, besides the path
	}{
		{"missing file", dir + "/nope.protoset", fs.ErrNotExist, "no such file"},
		{"a directory", dir, nil, "is a directory"},
		{"garbage bytes", writeFile(t, "garbage.protoset", []byte("this is not a protoset\n")), ErrInvalidProtoset, "not a FileDescriptorSet"},
		{"empty file", writeFile(t, "empty.protoset", nil), ErrInvalidProtoset, "no files"},
		{"a nameless file", writeFile(t, "nameless.protoset", []byte{0x0a, 0x00}), ErrInvalidProtoset, ""},
		{"missing dependency", writeFile(t, "nodeps.protoset", withoutDeps), ErrInvalidProtoset, "could not resolve import \"grpc/testing/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := LoadProtoset(tc.path)
			if err == nil {
				t.Fatalf("LoadProtoset(%s) = %v, nil; want an error", tc.path, p)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("LoadProtoset(%s) error = %v, want it to wrap %v", tc.path, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("LoadProtoset(%s) error = %q, want it to name the file", tc.path, err)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("LoadProtoset(%s) error = %q, want it to mention %q", tc.path, err, tc.wantText)
			}
		})
	}
}

func TestProtosetFindMethodErrors(t *testing.T) {
	p := testProtoset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tests := []struct {
		method string
		want   error
	}{
		{"", ErrBadMethodName},
		{"grpc.testing.TestService/UnaryCall", ErrBadMethodName},
		{"/grpc.testing.TestService", ErrBadMethodName},
		{"/grpc.testing.TestService/", ErrBadMethodName},
		{"//UnaryCall", ErrBadMethodName},
		{"/grpc.testing.TestService/UnaryCall/x", ErrBadMethodName},
		{"/grpc..testing.TestService/UnaryCall", ErrBadMethodName},
		{"/grpc.testing.TestService/Unary.Call", ErrBadMethodName},
		{"/no.such.Service/UnaryCall", ErrUnknownService},
		{"/grpc.testing.SimpleRequest/UnaryCall", ErrUnknownService}, // a message, not a service
		{"/grpc.testing.TestService/NoSuchCall", ErrUnknownMethod},
		{"/grpc.testing.TestService/unaryCall", ErrUnknownMethod},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			md, err := p.FindMethod(ctx, tc.method)
			if !errors.Is(err, tc.want) {
				t.Fatalf("FindMethod(%q) = %v, %v; want error %v", tc.method, md, err, tc.want)
			}
		})
	}
}
