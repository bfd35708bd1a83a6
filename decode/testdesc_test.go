package decode

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Test schema, built by hand so that every scalar kind, every map key kind,
// proto3 optional, oneofs, recursion, proto2 groups, required fields,
// defaults, closed enums and extensions are all present:
//
//	ztptest/all.proto     (proto3) message All, enum Color, service Admin
//	ztptest/legacy.proto  (proto2) message Legacy, enum Mood, extensions
//	ztptest/etcd.proto    (proto3) etcd-like PutRequest/TxnRequest for benchmarks
//	ztptest/gobgp.proto   (proto3) GoBGP-like AddPath, with Any-packed NLRI

type fdp = descriptorpb.FieldDescriptorProto

var (
	optional = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	repeated = descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum()
	required = descriptorpb.FieldDescriptorProto_LABEL_REQUIRED.Enum()
)

// scalarKinds lists every scalar field type with a short suffix for names.
var scalarKinds = []struct {
	suffix string
	typ    descriptorpb.FieldDescriptorProto_Type
}{
	{"double", descriptorpb.FieldDescriptorProto_TYPE_DOUBLE},
	{"float", descriptorpb.FieldDescriptorProto_TYPE_FLOAT},
	{"int64", descriptorpb.FieldDescriptorProto_TYPE_INT64},
	{"uint64", descriptorpb.FieldDescriptorProto_TYPE_UINT64},
	{"int32", descriptorpb.FieldDescriptorProto_TYPE_INT32},
	{"fixed64", descriptorpb.FieldDescriptorProto_TYPE_FIXED64},
	{"fixed32", descriptorpb.FieldDescriptorProto_TYPE_FIXED32},
	{"bool", descriptorpb.FieldDescriptorProto_TYPE_BOOL},
	{"string", descriptorpb.FieldDescriptorProto_TYPE_STRING},
	{"bytes", descriptorpb.FieldDescriptorProto_TYPE_BYTES},
	{"uint32", descriptorpb.FieldDescriptorProto_TYPE_UINT32},
	{"sfixed32", descriptorpb.FieldDescriptorProto_TYPE_SFIXED32},
	{"sfixed64", descriptorpb.FieldDescriptorProto_TYPE_SFIXED64},
	{"sint32", descriptorpb.FieldDescriptorProto_TYPE_SINT32},
	{"sint64", descriptorpb.FieldDescriptorProto_TYPE_SINT64},
}

// mapKeyKinds are the types protobuf allows as map keys.
var mapKeyKinds = []struct {
	suffix string
	typ    descriptorpb.FieldDescriptorProto_Type
}{
	{"int32", descriptorpb.FieldDescriptorProto_TYPE_INT32},
	{"int64", descriptorpb.FieldDescriptorProto_TYPE_INT64},
	{"uint32", descriptorpb.FieldDescriptorProto_TYPE_UINT32},
	{"uint64", descriptorpb.FieldDescriptorProto_TYPE_UINT64},
	{"sint32", descriptorpb.FieldDescriptorProto_TYPE_SINT32},
	{"sint64", descriptorpb.FieldDescriptorProto_TYPE_SINT64},
	{"fixed32", descriptorpb.FieldDescriptorProto_TYPE_FIXED32},
	{"fixed64", descriptorpb.FieldDescriptorProto_TYPE_FIXED64},
	{"sfixed32", descriptorpb.FieldDescriptorProto_TYPE_SFIXED32},
	{"sfixed64", descriptorpb.FieldDescriptorProto_TYPE_SFIXED64},
	{"bool", descriptorpb.FieldDescriptorProto_TYPE_BOOL},
	{"string", descriptorpb.FieldDescriptorProto_TYPE_STRING},
}

func field(name string, num int32, label *descriptorpb.FieldDescriptorProto_Label, typ descriptorpb.FieldDescriptorProto_Type, typeName string) *fdp {
	f := &fdp{Name: proto.String(name), Number: proto.Int32(num), Label: label, Type: typ.Enum()}
	if typeName != "" {
		f.TypeName = proto.String(typeName)
	}
	return f
}

func camel(s string) string {
	var b strings.Builder
	up := true
	for _, r := range s {
		if r == '_' {
			up = true
			continue
		}
		if up && r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		up = false
		b.WriteRune(r)
	}
	return b.String()
}

// mapField adds a map field and its synthetic entry message to msg.
func mapField(msg *descriptorpb.DescriptorProto, fullMsg, name string, num int32, key descriptorpb.FieldDescriptorProto_Type, val descriptorpb.FieldDescriptorProto_Type, valType string) {
	entry := &descriptorpb.DescriptorProto{
		Name: proto.String(camel(name) + "Entry"),
		Field: []*fdp{
			field("key", 1, optional, key, ""),
			field("value", 2, optional, val, valType),
		},
		Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
	}
	msg.NestedType = append(msg.NestedType, entry)
	msg.Field = append(msg.Field, field(name, num, repeated, descriptorpb.FieldDescriptorProto_TYPE_MESSAGE, "."+fullMsg+"."+entry.GetName()))
}

const msgT = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE

func allProto() *descriptorpb.FileDescriptorProto {
	all := &descriptorpb.DescriptorProto{Name: proto.String("All")}
	all.NestedType = append(all.NestedType, &descriptorpb.DescriptorProto{
		Name: proto.String("Nested"),
		Field: []*fdp{
			field("a", 1, optional, descriptorpb.FieldDescriptorProto_TYPE_INT32, ""),
			field("b", 2, optional, descriptorpb.FieldDescriptorProto_TYPE_STRING, ""),
			field("child", 3, optional, msgT, ".ztptest.All"),
		},
	})
	for i, k := range scalarKinds {
		all.Field = append(all.Field,
			field("f_"+k.suffix, int32(1+i), optional, k.typ, ""),
			field("r_"+k.suffix, int32(31+i), repeated, k.typ, ""))
	}
	all.Field = append(all.Field,
		field("f_enum", 16, optional, descriptorpb.FieldDescriptorProto_TYPE_ENUM, ".ztptest.Color"),
		field("f_nested", 17, optional, msgT, ".ztptest.All.Nested"),
		field("r_enum", 46, repeated, descriptorpb.FieldDescriptorProto_TYPE_ENUM, ".ztptest.Color"),
		field("r_nested", 47, repeated, msgT, ".ztptest.All.Nested"),
	)
	// A real oneof first; synthetic oneofs of proto3 optional fields must
	// come after all real ones.
	all.OneofDecl = append(all.OneofDecl, &descriptorpb.OneofDescriptorProto{Name: proto.String("choice")})
	for _, f := range []*fdp{
		field("c_string", 60, optional, descriptorpb.FieldDescriptorProto_TYPE_STRING, ""),
		field("c_nested", 61, optional, msgT, ".ztptest.All.Nested"),
		field("c_int64", 62, optional, descriptorpb.FieldDescriptorProto_TYPE_INT64, ""),
		field("c_bytes", 63, optional, descriptorpb.FieldDescriptorProto_TYPE_BYTES, ""),
	} {
		f.OneofIndex = proto.Int32(0)
		all.Field = append(all.Field, f)
	}
	for i, f := range []*fdp{
		field("o_int32", 50, optional, descriptorpb.FieldDescriptorProto_TYPE_INT32, ""),
		field("o_string", 51, optional, descriptorpb.FieldDescriptorProto_TYPE_STRING, ""),
		field("o_enum", 52, optional, descriptorpb.FieldDescriptorProto_TYPE_ENUM, ".ztptest.Color"),
		field("o_double", 53, optional, descriptorpb.FieldDescriptorProto_TYPE_DOUBLE, ""),
		field("o_nested", 54, optional, msgT, ".ztptest.All.Nested"),
	} {
		f.Proto3Optional = proto.Bool(true)
		f.OneofIndex = proto.Int32(int32(1 + i))
		all.OneofDecl = append(all.OneofDecl, &descriptorpb.OneofDescriptorProto{Name: proto.String("_" + f.GetName())})
		all.Field = append(all.Field, f)
	}
	valueKinds := []struct {
		typ      descriptorpb.FieldDescriptorProto_Type
		typeName string
	}{
		{descriptorpb.FieldDescriptorProto_TYPE_STRING, ""},
		{descriptorpb.FieldDescriptorProto_TYPE_INT64, ""},
		{descriptorpb.FieldDescriptorProto_TYPE_BYTES, ""},
		{msgT, ".ztptest.All.Nested"},
		{descriptorpb.FieldDescriptorProto_TYPE_ENUM, ".ztptest.Color"},
		{descriptorpb.FieldDescriptorProto_TYPE_DOUBLE, ""},
		{descriptorpb.FieldDescriptorProto_TYPE_FLOAT, ""},
		{descriptorpb.FieldDescriptorProto_TYPE_BOOL, ""},
		{msgT, ".google.protobuf.Value"},
		{descriptorpb.FieldDescriptorProto_TYPE_UINT32, ""},
		{descriptorpb.FieldDescriptorProto_TYPE_SINT32, ""},
		{msgT, ".google.protobuf.Timestamp"},
	}
	for i, k := range mapKeyKinds {
		v := valueKinds[i%len(valueKinds)]
		mapField(all, "ztptest.All", "map_"+k.suffix, int32(70+i), k.typ, v.typ, v.typeName)
	}
	for i, w := range []struct{ name, typ string }{
		{"ts", "Timestamp"}, {"dur", "Duration"}, {"st", "Struct"}, {"val", "Value"},
		{"lv", "ListValue"}, {"any", "Any"}, {"w_bool", "BoolValue"}, {"w_int32", "Int32Value"},
		{"w_int64", "Int64Value"}, {"w_uint32", "UInt32Value"}, {"w_uint64", "UInt64Value"},
		{"w_float", "FloatValue"}, {"w_double", "DoubleValue"}, {"w_string", "StringValue"},
		{"w_bytes", "BytesValue"}, {"fm", "FieldMask"}, {"empty", "Empty"},
	} {
		all.Field = append(all.Field, field(w.name, int32(90+i), optional, msgT, ".google.protobuf."+w.typ))
	}
	all.Field = append(all.Field,
		field("null_value", 120, optional, descriptorpb.FieldDescriptorProto_TYPE_ENUM, ".google.protobuf.NullValue"),
		field("r_ts", 121, repeated, msgT, ".google.protobuf.Timestamp"),
		field("r_any", 122, repeated, msgT, ".google.protobuf.Any"),
		field("r_null", 123, repeated, descriptorpb.FieldDescriptorProto_TYPE_ENUM, ".google.protobuf.NullValue"),
		field("r_value", 124, repeated, msgT, ".google.protobuf.Value"),
	)
	custom := field("custom_json", 130, optional, descriptorpb.FieldDescriptorProto_TYPE_STRING, "")
	custom.JsonName = proto.String("customName")
	all.Field = append(all.Field, custom,
		field("snake_case_2x_name", 131, optional, descriptorpb.FieldDescriptorProto_TYPE_INT32, ""))

	return &descriptorpb.FileDescriptorProto{
		Name:    proto.String("ztptest/all.proto"),
		Package: proto.String("ztptest"),
		Syntax:  proto.String("proto3"),
		Dependency: []string{
			"google/protobuf/any.proto", "google/protobuf/duration.proto",
			"google/protobuf/empty.proto", "google/protobuf/field_mask.proto",
			"google/protobuf/struct.proto", "google/protobuf/timestamp.proto",
			"google/protobuf/wrappers.proto",
			"ztptest/legacy.proto",
		},
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name: proto.String("Color"),
			Value: []*descriptorpb.EnumValueDescriptorProto{
				{Name: proto.String("COLOR_UNSPECIFIED"), Number: proto.Int32(0)},
				{Name: proto.String("RED"), Number: proto.Int32(1)},
				{Name: proto.String("GREEN"), Number: proto.Int32(2)},
			},
		}},
		MessageType: []*descriptorpb.DescriptorProto{all},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("Admin"),
			Method: []*descriptorpb.MethodDescriptorProto{
				{Name: proto.String("Do"), InputType: proto.String(".ztptest.All"), OutputType: proto.String(".ztptest.All")},
				{Name: proto.String("Old"), InputType: proto.String(".ztptest.Legacy"), OutputType: proto.String(".google.protobuf.Empty")},
				{Name: proto.String("Watch"), InputType: proto.String(".ztptest.All"), OutputType: proto.String(".ztptest.All"),
					ClientStreaming: proto.Bool(true), ServerStreaming: proto.Bool(true)},
				{Name: proto.String("When"), InputType: proto.String(".google.protobuf.Timestamp"), OutputType: proto.String(".google.protobuf.Empty")},
				{Name: proto.String("Nothing"), InputType: proto.String(".google.protobuf.Empty"), OutputType: proto.String(".google.protobuf.Empty")},
			},
		}},
	}
}

func legacyProto() *descriptorpb.FileDescriptorProto {
	i32 := descriptorpb.FieldDescriptorProto_TYPE_INT32
	name := field("name", 2, optional, descriptorpb.FieldDescriptorProto_TYPE_STRING, "")
	name.DefaultValue = proto.String("nobody")
	big := field("big", 3, optional, descriptorpb.FieldDescriptorProto_TYPE_INT64, "")
	big.DefaultValue = proto.String("5")
	legacy := &descriptorpb.DescriptorProto{
		Name: proto.String("Legacy"),
		Field: []*fdp{
			field("id", 1, required, i32, ""),
			name, big,
			field("grp", 4, optional, descriptorpb.FieldDescriptorProto_TYPE_GROUP, ".ztptest.Legacy.Grp"),
			field("unpacked", 6, repeated, i32, ""),
			field("mood", 7, optional, descriptorpb.FieldDescriptorProto_TYPE_ENUM, ".ztptest.Mood"),
			field("child", 9, optional, msgT, ".ztptest.Legacy"),
			field("moods", 10, repeated, descriptorpb.FieldDescriptorProto_TYPE_ENUM, ".ztptest.Mood"),
		},
		NestedType: []*descriptorpb.DescriptorProto{{
			Name:  proto.String("Grp"),
			Field: []*fdp{field("x", 5, optional, i32, "")},
		}},
		ExtensionRange: []*descriptorpb.DescriptorProto_ExtensionRange{{Start: proto.Int32(100), End: proto.Int32(200)}},
	}
	mapField(legacy, "ztptest.Legacy", "labels", 8, descriptorpb.FieldDescriptorProto_TYPE_STRING, descriptorpb.FieldDescriptorProto_TYPE_STRING, "")
	ext := func(f *fdp) *fdp { f.Extendee = proto.String(".ztptest.Legacy"); return f }
	return &descriptorpb.FileDescriptorProto{
		Name:    proto.String("ztptest/legacy.proto"),
		Package: proto.String("ztptest"),
		Syntax:  proto.String("proto2"),
		EnumType: []*descriptorpb.EnumDescriptorProto{{
			Name: proto.String("Mood"),
			Value: []*descriptorpb.EnumValueDescriptorProto{
				{Name: proto.String("HAPPY"), Number: proto.Int32(1)},
				{Name: proto.String("SAD"), Number: proto.Int32(2)},
			},
		}},
		MessageType: []*descriptorpb.DescriptorProto{legacy},
		Extension: []*fdp{
			ext(field("ext_name", 100, optional, descriptorpb.FieldDescriptorProto_TYPE_STRING, "")),
			ext(field("ext_nums", 101, repeated, descriptorpb.FieldDescriptorProto_TYPE_INT64, "")),
			ext(field("ext_self", 102, optional, msgT, ".ztptest.Legacy")),
		},
	}
}

// etcdProto mirrors the shape of etcd's KV requests closely enough to be a
// realistic benchmark: byte keys and values, int64 leases and revisions,
// bools, enums, and a Txn of nested oneofs.
func etcdProto() *descriptorpb.FileDescriptorProto {
	b := descriptorpb.FieldDescriptorProto_TYPE_BYTES
	i64 := descriptorpb.FieldDescriptorProto_TYPE_INT64
	bo := descriptorpb.FieldDescriptorProto_TYPE_BOOL
	en := descriptorpb.FieldDescriptorProto_TYPE_ENUM
	oneof := func(f *fdp, i int32) *fdp { f.OneofIndex = proto.Int32(i); return f }
	return &descriptorpb.FileDescriptorProto{
		Name:    proto.String("ztptest/etcd.proto"),
		Package: proto.String("ztpetcd"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("PutRequest"), Field: []*fdp{
				field("key", 1, optional, b, ""), field("value", 2, optional, b, ""),
				field("lease", 3, optional, i64, ""), field("prev_kv", 4, optional, bo, ""),
				field("ignore_value", 5, optional, bo, ""), field("ignore_lease", 6, optional, bo, ""),
			}},
			{Name: proto.String("RangeRequest"), Field: []*fdp{
				field("key", 1, optional, b, ""), field("range_end", 2, optional, b, ""),
				field("limit", 3, optional, i64, ""), field("revision", 4, optional, i64, ""),
				field("sort_order", 5, optional, en, ".ztpetcd.SortOrder"),
				field("serializable", 7, optional, bo, ""), field("keys_only", 8, optional, bo, ""),
				field("count_only", 9, optional, bo, ""),
			}},
			{Name: proto.String("DeleteRangeRequest"), Field: []*fdp{
				field("key", 1, optional, b, ""), field("range_end", 2, optional, b, ""),
				field("prev_kv", 3, optional, bo, ""),
			}},
			{Name: proto.String("RequestOp"), OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("request")}},
				Field: []*fdp{
					oneof(field("request_range", 1, optional, msgT, ".ztpetcd.RangeRequest"), 0),
					oneof(field("request_put", 2, optional, msgT, ".ztpetcd.PutRequest"), 0),
					oneof(field("request_delete_range", 3, optional, msgT, ".ztpetcd.DeleteRangeRequest"), 0),
				}},
			{Name: proto.String("Compare"), OneofDecl: []*descriptorpb.OneofDescriptorProto{{Name: proto.String("target_union")}},
				Field: []*fdp{
					field("result", 1, optional, en, ".ztpetcd.CompareResult"),
					field("key", 3, optional, b, ""),
					oneof(field("version", 4, optional, i64, ""), 0),
					oneof(field("mod_revision", 6, optional, i64, ""), 0),
					oneof(field("value", 7, optional, b, ""), 0),
				}},
			{Name: proto.String("TxnRequest"), Field: []*fdp{
				field("compare", 1, repeated, msgT, ".ztpetcd.Compare"),
				field("success", 2, repeated, msgT, ".ztpetcd.RequestOp"),
				field("failure", 3, repeated, msgT, ".ztpetcd.RequestOp"),
			}},
		},
		EnumType: []*descriptorpb.EnumDescriptorProto{
			{Name: proto.String("SortOrder"), Value: []*descriptorpb.EnumValueDescriptorProto{
				{Name: proto.String("NONE"), Number: proto.Int32(0)}, {Name: proto.String("ASCEND"), Number: proto.Int32(1)},
				{Name: proto.String("DESCEND"), Number: proto.Int32(2)},
			}},
			{Name: proto.String("CompareResult"), Value: []*descriptorpb.EnumValueDescriptorProto{
				{Name: proto.String("EQUAL"), Number: proto.Int32(0)}, {Name: proto.String("GREATER"), Number: proto.Int32(1)},
				{Name: proto.String("LESS"), Number: proto.Int32(2)}, {Name: proto.String("NOT_EQUAL"), Number: proto.Int32(3)},
			}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("KV"),
			Method: []*descriptorpb.MethodDescriptorProto{
				{Name: proto.String("Put"), InputType: proto.String(".ztpetcd.PutRequest"), OutputType: proto.String(".ztpetcd.PutRequest")},
				{Name: proto.String("Txn"), InputType: proto.String(".ztpetcd.TxnRequest"), OutputType: proto.String(".ztpetcd.TxnRequest")},
			},
		}},
	}
}

// gobgpProto mirrors the part of GoBGP's API (package apipb, gobgp 3.x) that
// `gobgp global rib add` uses: a Path whose NLRI and attributes are packed in
// google.protobuf.Any, proto3 scalars whose zero values (prefix_len 0, table
// type GLOBAL, origin IGP) mean something.
func gobgpProto() *descriptorpb.FileDescriptorProto {
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING
	u32 := descriptorpb.FieldDescriptorProto_TYPE_UINT32
	en := descriptorpb.FieldDescriptorProto_TYPE_ENUM
	bo := descriptorpb.FieldDescriptorProto_TYPE_BOOL
	values := func(names ...string) []*descriptorpb.EnumValueDescriptorProto {
		var vs []*descriptorpb.EnumValueDescriptorProto
		for i, n := range names {
			vs = append(vs, &descriptorpb.EnumValueDescriptorProto{Name: proto.String(n), Number: proto.Int32(int32(i))})
		}
		return vs
	}
	return &descriptorpb.FileDescriptorProto{
		Name:       proto.String("ztptest/gobgp.proto"),
		Package:    proto.String("apipb"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/any.proto"},
		EnumType: []*descriptorpb.EnumDescriptorProto{
			{Name: proto.String("TableType"), Value: values("GLOBAL", "LOCAL", "ADJ_IN", "ADJ_OUT", "VRF")},
		},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Family"), Field: []*fdp{
				field("afi", 1, optional, en, ".apipb.Family.Afi"), field("safi", 2, optional, en, ".apipb.Family.Safi"),
			}, EnumType: []*descriptorpb.EnumDescriptorProto{
				{Name: proto.String("Afi"), Value: values("AFI_UNKNOWN", "AFI_IP", "AFI_IP6")},
				{Name: proto.String("Safi"), Value: values("SAFI_UNKNOWN", "SAFI_UNICAST", "SAFI_MULTICAST")},
			}},
			{Name: proto.String("IPAddressPrefix"), Field: []*fdp{
				field("prefix_len", 1, optional, u32, ""), field("prefix", 2, optional, str, ""),
			}},
			{Name: proto.String("OriginAttribute"), Field: []*fdp{field("origin", 1, optional, u32, "")}},
			{Name: proto.String("NextHopAttribute"), Field: []*fdp{field("next_hop", 1, optional, str, "")}},
			{Name: proto.String("Path"), Field: []*fdp{
				field("nlri", 1, optional, msgT, ".google.protobuf.Any"),
				field("pattrs", 2, repeated, msgT, ".google.protobuf.Any"),
				field("is_withdraw", 5, optional, bo, ""),
				field("family", 9, optional, msgT, ".apipb.Family"),
			}},
			{Name: proto.String("AddPathRequest"), Field: []*fdp{
				field("table_type", 1, optional, en, ".apipb.TableType"),
				field("vrf_id", 2, optional, str, ""),
				field("path", 3, optional, msgT, ".apipb.Path"),
			}},
			{Name: proto.String("AddPathResponse"), Field: []*fdp{field("uuid", 1, optional, descriptorpb.FieldDescriptorProto_TYPE_BYTES, "")}},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("GobgpApi"),
			Method: []*descriptorpb.MethodDescriptorProto{
				{Name: proto.String("AddPath"), InputType: proto.String(".apipb.AddPathRequest"), OutputType: proto.String(".apipb.AddPathResponse")},
			},
		}},
	}
}

// testFiles links the test schema against the compiled-in well-known types.
func testFiles(t testing.TB) *protoregistry.Files {
	t.Helper()
	files := new(protoregistry.Files)
	for _, p := range allProto().GetDependency()[:7] { // the well-known types
		fd, err := protoregistry.GlobalFiles.FindFileByPath(p)
		if err != nil {
			t.Fatalf("compiled-in %s: %v", p, err)
		}
		if err := files.RegisterFile(fd); err != nil {
			t.Fatalf("RegisterFile(%s): %v", p, err)
		}
	}
	for _, p := range []*descriptorpb.FileDescriptorProto{legacyProto(), allProto(), etcdProto(), gobgpProto()} {
		fd, err := protodesc.NewFile(p, files)
		if err != nil {
			t.Fatalf("protodesc.NewFile(%s): %v", p.GetName(), err)
		}
		if err := files.RegisterFile(fd); err != nil {
			t.Fatalf("RegisterFile(%s): %v", p.GetName(), err)
		}
	}
	return files
}

func messageDesc(t testing.TB, files *protoregistry.Files, name protoreflect.FullName) protoreflect.MessageDescriptor {
	t.Helper()
	d, err := files.FindDescriptorByName(name)
	if err != nil {
		t.Fatalf("FindDescriptorByName(%s): %v", name, err)
	}
	return d.(protoreflect.MessageDescriptor)
}

// protosetBytes serialises the given files and all their imports as a
// FileDescriptorSet, like protoc --include_imports --descriptor_set_out.
func protosetBytes(t testing.TB, roots ...protoreflect.FileDescriptor) []byte {
	t.Helper()
	set := &descriptorpb.FileDescriptorSet{}
	seen := make(map[string]bool)
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		for i := range f.Imports().Len() {
			add(f.Imports().Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	for _, f := range roots {
		add(f)
	}
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatalf("marshal FileDescriptorSet: %v", err)
	}
	return b
}

func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testProtoset writes a protoset with the test schema and grpc_testing.
func testProtoset(t testing.TB) *Protoset {
	t.Helper()
	files := testFiles(t)
	var roots []protoreflect.FileDescriptor
	files.RangeFiles(func(f protoreflect.FileDescriptor) bool { roots = append(roots, f); return true })
	roots = append(roots, grpc_testing.File_grpc_testing_test_proto)
	p, err := LoadProtoset(writeFile(t, "test.protoset", protosetBytes(t, roots...)))
	if err != nil {
		t.Fatalf("LoadProtoset: %v", err)
	}
	return p
}

// populator fills messages with random values biased towards the edges that
// JSON rendering gets wrong: NaN, infinities, -0, exponent boundaries,
// extreme integers, unknown enum numbers, escapes and non-ASCII text.
type populator struct {
	rng *rand.Rand
	// invalid is the chance of planting a value protojson refuses (bad UTF-8,
	// out-of-range timestamp, unresolvable Any), so refusal is compared too.
	invalid float64
}

func (p *populator) chance(f float64) bool { return p.rng.Float64() < f }

func (p *populator) message(m protoreflect.Message, depth int) {
	md := m.Descriptor()
	if hasSpecialJSON(md.FullName()) {
		p.wellKnown(m, depth)
		return
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Cardinality() == protoreflect.Required {
			m.Set(fd, p.scalar(fd))
			continue
		}
		if !p.chance(0.5) {
			continue
		}
		switch {
		case fd.IsList():
			list := m.Mutable(fd).List()
			for range p.rng.IntN(4) {
				if fd.Message() != nil {
					if depth > 2 {
						break
					}
					v := list.NewElement()
					p.message(v.Message(), depth+1)
					list.Append(v)
				} else {
					list.Append(p.scalar(fd))
				}
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range p.rng.IntN(4) {
				k := p.scalar(fd.MapKey()).MapKey()
				if fd.MapValue().Message() != nil {
					if depth > 2 {
						break
					}
					v := mp.NewValue()
					p.message(v.Message(), depth+1)
					mp.Set(k, v)
				} else {
					mp.Set(k, p.scalar(fd.MapValue()))
				}
			}
		case fd.Message() != nil:
			if depth > 2 {
				continue
			}
			p.message(m.Mutable(fd).Message(), depth+1)
		default:
			m.Set(fd, p.scalar(fd))
		}
	}
	if md.FullName() == "ztptest.Legacy" && p.chance(0.5) {
		p.extensions(m)
	}
}

func (p *populator) extensions(m protoreflect.Message) {
	xds := m.Descriptor().ParentFile().Extensions()
	for i := range xds.Len() {
		xd := xds.Get(i)
		if !p.chance(0.5) {
			continue
		}
		xt := dynamicpb.NewExtensionType(xd)
		switch {
		case xd.IsList():
			list := xt.New().List()
			list.Append(protoreflect.ValueOfInt64(p.rng.Int64()))
			m.Set(xt.TypeDescriptor(), protoreflect.ValueOfList(list))
		case xd.Message() != nil:
			v := xt.New()
			p.message(v.Message(), 3)
			m.Set(xt.TypeDescriptor(), v)
		default:
			m.Set(xt.TypeDescriptor(), protoreflect.ValueOfString(p.text(false)))
		}
	}
}

var (
	edgeFloats   = []float64{0, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1), 1e-7, 1e-6, 9.999e-7, 1e20, 1e21, 1e22, 0.1, 1.5, -2.5e-10, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64, math.MaxFloat32, math.SmallestNonzeroFloat32, 16777217, 1 << 53}
	edgeInt64s   = []int64{0, 1, -1, math.MaxInt64, math.MinInt64, math.MaxInt32, math.MinInt32, 1 << 53, -(1 << 53) - 1}
	edgeUint64s  = []uint64{0, 1, math.MaxUint64, math.MaxUint32, 1 << 63}
	edgeStrings  = []string{"", "a", "hello world", "ünïcödé ✓", "日本語", "emoji 🙂", "quote \" backslash \\ slash /", "ctl \x00\x01\x1f\t\n\r", "<script>&amp;</script>", "\u2028\u2029", "\ufffd", "snake_case_key"}
	invalidUTF8s = []string{"\xff", "a\xc3", "\xed\xa0\x80"}
)

func (p *populator) text(allowInvalid bool) string {
	if allowInvalid && p.chance(p.invalid) {
		return invalidUTF8s[p.rng.IntN(len(invalidUTF8s))]
	}
	if p.chance(0.7) {
		return edgeStrings[p.rng.IntN(len(edgeStrings))]
	}
	b := make([]rune, p.rng.IntN(8))
	for i := range b {
		b[i] = rune(p.rng.IntN(0x2FFF) + 1)
		if b[i] >= 0xD800 && b[i] <= 0xDFFF {
			b[i] = 'x'
		}
	}
	return string(b)
}

func (p *populator) float() float64 {
	if p.chance(0.5) {
		return edgeFloats[p.rng.IntN(len(edgeFloats))]
	}
	return math.Ldexp(p.rng.NormFloat64(), p.rng.IntN(200)-100)
}

func (p *populator) int64() int64 {
	if p.chance(0.4) {
		return edgeInt64s[p.rng.IntN(len(edgeInt64s))]
	}
	return p.rng.Int64() >> p.rng.IntN(64) * int64(1-2*p.rng.IntN(2))
}

func (p *populator) uint64() uint64 {
	if p.chance(0.4) {
		return edgeUint64s[p.rng.IntN(len(edgeUint64s))]
	}
	return p.rng.Uint64() >> p.rng.IntN(64)
}

func (p *populator) scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(p.chance(0.5))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(p.int64()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(p.int64())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(p.uint64()))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(p.uint64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(p.float()))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(p.float())
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(p.text(true))
	case protoreflect.BytesKind:
		b := make([]byte, p.rng.IntN(12))
		for i := range b {
			b[i] = byte(p.rng.IntN(256))
		}
		return protoreflect.ValueOfBytes(b)
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		if p.chance(0.2) {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(p.rng.IntN(100) - 10)) // often unknown
		}
		return protoreflect.ValueOfEnum(values.Get(p.rng.IntN(values.Len())).Number())
	}
	panic("no scalar for " + fd.FullName())
}

// wellKnown fills a well-known type with mostly valid values, merging the
// bytes of a generated message so the same code serves dynamic and generated
// messages.
func (p *populator) wellKnown(m protoreflect.Message, depth int) {
	var v proto.Message
	bad := p.chance(p.invalid)
	switch m.Descriptor().Name() {
	case "Timestamp":
		ts := &timestamppb.Timestamp{Seconds: p.rng.Int64N(253402300800+62135596800) - 62135596800, Nanos: p.rng.Int32N(1e9)}
		if bad {
			ts.Seconds = 253402300800 + 1
		}
		v = ts
	case "Duration":
		d := &durationpb.Duration{Seconds: p.rng.Int64N(315576000000), Nanos: p.rng.Int32N(1e9)}
		if p.chance(0.5) {
			d.Seconds, d.Nanos = -d.Seconds, -d.Nanos
		}
		if bad {
			d.Nanos = -d.Nanos + 1
			d.Seconds = 1
		}
		v = d
	case "Struct":
		v = p.structValue(depth)
	case "Value":
		v = p.value(depth)
	case "ListValue":
		v = p.listValue(depth)
	case "Any":
		v = p.any(bad)
	case "FieldMask":
		fm := &fieldmaskpb.FieldMask{Paths: []string{"a", "foo_bar", "x.y_z"}[:p.rng.IntN(4)]}
		if bad {
			fm.Paths = append(fm.Paths, "fooBar")
		}
		v = fm
	case "Empty":
		v = &emptypb.Empty{}
	case "BoolValue":
		v = wrapperspb.Bool(p.chance(0.5))
	case "Int32Value":
		v = wrapperspb.Int32(int32(p.int64()))
	case "Int64Value":
		v = wrapperspb.Int64(p.int64())
	case "UInt32Value":
		v = wrapperspb.UInt32(uint32(p.uint64()))
	case "UInt64Value":
		v = wrapperspb.UInt64(p.uint64())
	case "FloatValue":
		v = wrapperspb.Float(float32(p.float()))
	case "DoubleValue":
		v = wrapperspb.Double(p.float())
	case "StringValue":
		v = wrapperspb.String(p.text(false))
	case "BytesValue":
		v = wrapperspb.Bytes([]byte(p.text(false)))
	default:
		panic("unhandled well-known type " + m.Descriptor().FullName())
	}
	b, err := proto.Marshal(v)
	if err != nil {
		panic(err)
	}
	if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(b, m.Interface()); err != nil {
		panic(err)
	}
}

func (p *populator) value(depth int) *structpb.Value {
	n := 4
	if depth < 4 {
		n = 6
	}
	switch p.rng.IntN(n) {
	case 0:
		return structpb.NewNullValue()
	case 1:
		f := p.float()
		if (math.IsNaN(f) || math.IsInf(f, 0)) && !p.chance(p.invalid) {
			f = 0.5
		}
		return structpb.NewNumberValue(f)
	case 2:
		return structpb.NewStringValue(p.text(false))
	case 3:
		return structpb.NewBoolValue(p.chance(0.5))
	case 4:
		return structpb.NewStructValue(p.structValue(depth + 1))
	default:
		return structpb.NewListValue(p.listValue(depth + 1))
	}
}

func (p *populator) structValue(depth int) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for range p.rng.IntN(3) {
		s.Fields[p.text(false)] = p.value(depth + 1)
	}
	return s
}

func (p *populator) listValue(depth int) *structpb.ListValue {
	l := &structpb.ListValue{}
	for range p.rng.IntN(3) {
		l.Values = append(l.Values, p.value(depth+1))
	}
	return l
}

func (p *populator) any(bad bool) *anypb.Any {
	if bad {
		return &anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type", Value: []byte{8, 1}}
	}
	var inner proto.Message
	switch p.rng.IntN(4) {
	case 0:
		inner = durationpb.New(1500_000_000)
	case 1:
		inner = &grpc_testing.Payload{Type: grpc_testing.PayloadType_COMPRESSABLE, Body: []byte(p.text(false))}
	case 2:
		inner = p.any(false) // an Any in an Any
	default:
		inner = &grpc_testing.SimpleRequest{ResponseSize: int32(p.int64()), FillUsername: true}
	}
	a, err := anypb.New(inner)
	if err != nil {
		panic(err)
	}
	// Type URLs as callers may spell them: the runtimes resolve the name
	// after the last '/', whatever comes before.
	if p.chance(0.4) {
		name := strings.TrimPrefix(a.TypeUrl, "type.googleapis.com/")
		a.TypeUrl = []string{"", "/", "evil.example/", "a/b/", "type.googleapis.com/x/"}[p.rng.IntN(5)] + name
	}
	return a
}

func newSeededPopulator() *populator {
	return &populator{rng: rand.New(rand.NewPCG(7, 11)), invalid: 0.05}
}
