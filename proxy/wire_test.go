package proxy_test

import (
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// wireMethod is the one method of the schema wireFile builds; its service
// matches proxytest's "grpc.testing.*" route.
const wireMethod = "/grpc.testing.wire.Wire/Do"

// wireFile is a proto2 schema with every shape the pre-scan walks:
//
//	message Req {
//	  oneof o { Leaf a = 1; Leaf b = 2; }
//	  optional Leaf single = 3;     repeated Leaf list = 4;
//	  map<string, Leaf> m = 5;      optional google.protobuf.Any any = 6;
//	  optional group G = 7 { optional int32 x = 8; }
//	  repeated int64 nums = 9;      optional Req child = 10;
//	  optional int64 n = 11;        repeated string names = 12;
//	  repeated google.protobuf.Any anys = 14;
//	}
//	message Leaf { optional int64 n = 1; optional bool flag = 2; }
func wireFile(t testing.TB) protoreflect.FileDescriptor {
	t.Helper()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	rep := descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	f := func(name string, num int32, label *descriptorpb.FieldDescriptorProto_Label, typ descriptorpb.FieldDescriptorProto_Type, typeName string) *descriptorpb.FieldDescriptorProto {
		fd := &descriptorpb.FieldDescriptorProto{Name: proto.String(name), Number: proto.Int32(num), Label: label, Type: typ.Enum()}
		if typeName != "" {
			fd.TypeName = proto.String(typeName)
		}
		return fd
	}
	msg, i64, boo := descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, descriptorpb.FieldDescriptorProto_TYPE_INT64, descriptorpb.FieldDescriptorProto_TYPE_BOOL
	a, b := f("a", 1, opt, msg, ".grpc.testing.wire.Leaf"), f("b", 2, opt, msg, ".grpc.testing.wire.Leaf")
	a.OneofIndex, b.OneofIndex = proto.Int32(0), proto.Int32(0)
	fdp := &descriptorpb.FileDescriptorProto{
		Name: proto.String("ztpwire/wire.proto"), Package: proto.String("grpc.testing.wire"), Syntax: proto.String("proto2"),
		Dependency: []string{"google/protobuf/any.proto", "google/protobuf/empty.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Leaf"), Field: []*descriptorpb.FieldDescriptorProto{f("n", 1, opt, i64, ""), f("flag", 2, opt, boo, "")}},
			{
				Name:      proto.String("Req"),
				OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("o")}},
				Field: []*descriptorpb.FieldDescriptorProto{
					a, b,
					f("single", 3, opt, msg, ".grpc.testing.wire.Leaf"),
					f("list", 4, rep, msg, ".grpc.testing.wire.Leaf"),
					f("m", 5, rep, msg, ".grpc.testing.wire.Req.MEntry"),
					f("any", 6, opt, msg, ".google.protobuf.Any"),
					f("g", 7, opt, descriptorpb.FieldDescriptorProto_TYPE_GROUP, ".grpc.testing.wire.Req.G"),
					f("nums", 9, rep, i64, ""),
					f("child", 10, opt, msg, ".grpc.testing.wire.Req"),
					f("n", 11, opt, i64, ""),
					f("names", 12, rep, descriptorpb.FieldDescriptorProto_TYPE_STRING, ""),
					f("anys", 14, rep, msg, ".google.protobuf.Any"),
				},
				NestedType: []*descriptorpb.DescriptorProto{
					{Name: proto.String("MEntry"), Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
						Field: []*descriptorpb.FieldDescriptorProto{f("key", 1, opt, descriptorpb.FieldDescriptorProto_TYPE_STRING, ""), f("value", 2, opt, msg, ".grpc.testing.wire.Leaf")}},
					{Name: proto.String("G"), Field: []*descriptorpb.FieldDescriptorProto{f("x", 8, opt, descriptorpb.FieldDescriptorProto_TYPE_INT32, "")}},
				},
			},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("Wire"), Method: []*descriptorpb.MethodDescriptorProto{
			{Name: proto.String("Do"), InputType: proto.String(".grpc.testing.wire.Req"), OutputType: proto.String(".google.protobuf.Empty")},
		}}},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// wireBackend is an upstream serving any method: it counts the calls that
// reach it and answers an empty message.
type wireBackend struct {
	addr  string
	calls atomic.Int64
}

func startWireBackend(t testing.TB) *wireBackend {
	t.Helper()
	b := &wireBackend{}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		b.calls.Add(1)
		if err := ss.RecvMsg(&emptypb.Empty{}); err != nil {
			return err
		}
		return ss.SendMsg(&emptypb.Empty{})
	}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = lis.Addr().String()
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return b
}

// wirePolicy allows everything it can read and says why it cannot read the
// rest.
const wirePolicy = `package ztp

default allow := false

allow if input.request_decoded

deny contains sprintf("not decoded: %s", [input.request_undecoded_reason]) if not input.request_decoded
`

// startWire is a proxy in front of a wireBackend, deciding wireMethod with
// wireFile's descriptors.
func startWire(t testing.TB, o proxytest.Options) (*proxytest.Env, *wireBackend) {
	t.Helper()
	b := startWireBackend(t)
	o.Upstream = b.addr
	if o.Policy == "" {
		o.Policy = wirePolicy
	}
	e := proxytest.Prepare(t, o)
	proxytest.WriteProtoset(t, filepath.Join(e.Dir, "test.protoset"), wireFile(t))
	e.Restart(t)
	return e, b
}

// raw is a message whose wire form is exactly its bytes.
func raw(b []byte) proto.Message {
	m := &emptypb.Empty{}
	m.ProtoReflect().SetUnknown(b)
	return m
}

func lenF(num protowire.Number, body ...[]byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), slices.Concat(body...))
}

func varintF(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func groupF(num protowire.Number, body ...[]byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.StartGroupType)
	b = append(b, slices.Concat(body...)...)
	return protowire.AppendTag(b, num, protowire.EndGroupType)
}

func anyF(typeName string, value ...[]byte) []byte {
	return slices.Concat(lenF(1, []byte("type.googleapis.com/"+typeName)), lenF(2, value...))
}

// TestAmbiguousEncodingRefused: a message in which a non-repeated field
// occurs twice, in any shape and at any depth, is refused by the proxy with
// INVALID_ARGUMENT and an audited deny naming the field, and never reaches
// the upstream; with upstreams[].allow_duplicate_fields the same messages
// are decided (and here allowed) as protobuf-go reads them.
func TestAmbiguousEncodingRefused(t *testing.T) {
	leaf, flag := varintF(1, 1), varintF(2, 1)
	cases := []struct {
		name string
		in   []byte
		path string
	}{
		{"duplicate scalar", slices.Concat(varintF(11, 1), varintF(11, 2)), "n"},
		{"duplicate message field", slices.Concat(lenF(3, flag), lenF(3, leaf)), "single"},
		{"duplicate scalar in a message", lenF(3, flag, varintF(2, 0)), "single.flag"},
		{"two members of one oneof", slices.Concat(lenF(1, leaf), lenF(2, leaf)), "b"},
		{"one oneof member twice", slices.Concat(lenF(1, leaf), lenF(1, flag)), "a"},
		{"duplicate in the third element of a list", slices.Concat(lenF(4, leaf), lenF(4), lenF(4, leaf, leaf)), "list[2].n"},
		{"duplicate inside an Any", lenF(6, anyF("grpc.testing.wire.Leaf", leaf, leaf)), "any.n"},
		{"duplicate inside an Any inside an Any", lenF(6, anyF("google.protobuf.Any", anyF("grpc.testing.wire.Leaf", flag, flag))), "any.flag"},
		{"duplicate inside a map entry's value", lenF(5, lenF(1, []byte("k")), lenF(2, leaf, leaf)), "m.*.n"},
		{"map entry key twice", lenF(5, lenF(1, []byte("k")), lenF(1, []byte("j"))), "m.*"},
		{"duplicate in a group", groupF(7, varintF(8, 1), varintF(8, 2)), "g.x"},
		{"deep in a recursive message", lenF(10, lenF(10, lenF(10, varintF(11, 1), varintF(11, 1)))), "child.child.child.n"},
	}
	e, backend := startWire(t, proxytest.Options{})
	conn := e.Conn(t, proxytest.DeployerID)
	for _, tc := range cases {
		err := conn.Invoke(proxytest.Ctx(t), wireMethod, raw(tc.in), &emptypb.Empty{})
		proxytest.WantCode(t, tc.name, err, codes.InvalidArgument, "ambiguous encoding: "+tc.path+" ")
	}
	if n := backend.calls.Load(); n != 0 {
		t.Errorf("backend calls = %d, want 0", n)
	}
	recs := e.Requests(t, wireMethod)
	if len(recs) != len(cases) {
		t.Fatalf("%d request records, want %d", len(recs), len(cases))
	}
	for i, r := range recs {
		want := "ambiguous encoding: " + cases[i].path + " "
		if r.Decision != "deny" || len(r.Reasons) != 1 || !strings.HasPrefix(r.Reasons[0], want) || r.RequestDecoded || r.Detail != "ambiguous" || r.PolicyVersion != "" {
			t.Errorf("%s: record decision %q reasons %q decoded %v detail %q policy %q; want deny %q…, ambiguous, no policy",
				cases[i].name, r.Decision, r.Reasons, r.RequestDecoded, r.Detail, r.PolicyVersion, want)
		}
	}
	for _, r := range e.Records(t) {
		if r.Type == "outcome" && r.Code != "INVALID_ARGUMENT" {
			t.Errorf("outcome record code %q, want INVALID_ARGUMENT", r.Code)
		}
	}

	e.RewriteConfig(t, func(s string) string {
		return strings.Replace(s, "    tls: { insecure: true }\n", "    tls: { insecure: true }\n    allow_duplicate_fields: true\n", 1)
	})
	e.Restart(t)
	conn = e.Conn(t, proxytest.DeployerID)
	for _, tc := range cases {
		if err := conn.Invoke(proxytest.Ctx(t), wireMethod, raw(tc.in), &emptypb.Empty{}); err != nil {
			t.Errorf("%s with allow_duplicate_fields: %v", tc.name, err)
		}
	}
	if n := backend.calls.Load(); n != int64(len(cases)) {
		t.Errorf("backend calls = %d, want %d", n, len(cases))
	}
}

// TestTooComplexNotDecoded: a message over limits.max_decoded_nodes or
// limits.max_decode_depth reaches the policy undecoded, with
// request_undecoded_reason "too_complex", which the audit record keeps.
func TestTooComplexNotDecoded(t *testing.T) {
	e, backend := startWire(t, proxytest.Options{Limits: "  max_decoded_nodes: 100\n  max_decode_depth: 5\n"})
	conn := e.Conn(t, proxytest.DeployerID)
	var wide, deep []byte
	for range 101 {
		wide = append(wide, varintF(9, 1)...)
	}
	deep = varintF(11, 1)
	for range 5 {
		deep = lenF(10, deep)
	}
	ok := slices.Repeat(varintF(9, 1), 100)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"101 list elements", wide, "not decoded: too_complex"},
		{"6 nested messages", deep, "not decoded: too_complex"},
		{"unparsable", []byte{0xff}, "not decoded: unparsable"},
		{"Any of an unknown type", lenF(6, anyF("nope.Nope")), "not decoded: unrenderable"},
		{"100 list elements", ok, ""},
	} {
		err := conn.Invoke(proxytest.Ctx(t), wireMethod, raw(tc.in), &emptypb.Empty{})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		proxytest.WantCode(t, tc.name, err, codes.PermissionDenied, tc.want)
	}
	if n := backend.calls.Load(); n != 1 {
		t.Errorf("backend calls = %d, want 1", n)
	}
	recs := e.Requests(t, wireMethod)
	want := []string{"too_complex", "too_complex", "unparsable", "unrenderable", ""}
	for i, r := range recs {
		if r.Detail != want[i] || r.RequestDecoded != (want[i] == "") {
			t.Errorf("record %d: detail %q decoded %v, want %q", i, r.Detail, r.RequestDecoded, want[i])
		}
	}
}
