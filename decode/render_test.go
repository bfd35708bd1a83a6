package decode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// normalise parses JSON into plain Go values with numbers kept as the exact
// text protojson or encoding/json wrote, so that "1e+21" and "1e21" differ.
func normalise(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// oracle is the rendering ToMap and Decode promise (see the package
// documentation): protojson with EmitDefaultValues, after the type URL of
// every google.protobuf.Any, at any depth, has been made canonical. m is
// changed for the call and restored: proto.Clone would turn -0 into 0.
func oracle(m proto.Message, types typeResolver) ([]byte, error) {
	if m.ProtoReflect().IsValid() {
		defer canonicalAnys(m.ProtoReflect(), types)()
	}
	return protojson.MarshalOptions{EmitDefaultValues: true, Resolver: types}.Marshal(m)
}

// canonicalAnys rewrites, in place, the type URL of every Any in m to
// "type.googleapis.com/" and the full name it resolves to, repacking the
// Anys inside Anys, and returns the function that undoes it. An Any that does
// not resolve or unpack is left alone, for protojson to refuse.
func canonicalAnys(m protoreflect.Message, types typeResolver) (undo func()) {
	var undos []func()
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		if m.Descriptor().FullName() == anyName {
			urlField, valueField := m.Descriptor().Fields().ByNumber(1), m.Descriptor().Fields().ByNumber(2)
			url, value := m.Get(urlField), m.Get(valueField)
			if url.String() == "" {
				return
			}
			mt, err := types.FindMessageByURL(url.String())
			if err != nil {
				return
			}
			inner := mt.New()
			if err := (proto.UnmarshalOptions{AllowPartial: true, Resolver: types}).Unmarshal(value.Bytes(), inner.Interface()); err != nil {
				return
			}
			canonicalAnys(inner, types) // inner is a copy: nothing to undo
			b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(inner.Interface())
			if err != nil {
				return
			}
			m.Set(urlField, protoreflect.ValueOfString("type.googleapis.com/"+string(mt.Descriptor().FullName())))
			m.Set(valueField, protoreflect.ValueOfBytes(b))
			undos = append(undos, func() { m.Set(urlField, url); m.Set(valueField, value) })
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsMap():
				if fd.MapValue().Message() != nil {
					v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
						walk(mv.Message())
						return true
					})
				}
			case fd.IsList():
				if fd.Message() != nil {
					for i := range v.List().Len() {
						walk(v.List().Get(i).Message())
					}
				}
			case fd.Message() != nil:
				walk(v.Message())
			}
			return true
		})
	}
	walk(m)
	return func() {
		for _, u := range undos {
			u()
		}
	}
}

// compareWithOracle renders m both ways and reports any difference: in
// whether rendering succeeds, or in the JSON value produced.
func compareWithOracle(m proto.Message, types typeResolver) error {
	_, err := compareRendered(m, types)
	return err
}

// compareRendered is compareWithOracle that also says whether both sides
// rendered (rather than both refused).
func compareRendered(m proto.Message, types typeResolver) (rendered bool, err error) {
	got, gotErr := toMap(m.ProtoReflect(), types, true)
	want, wantErr := oracle(m, types)
	switch {
	case gotErr != nil && wantErr != nil:
		if !errors.Is(gotErr, ErrUnrenderable) && !errors.Is(gotErr, ErrNotObject) {
			return false, fmt.Errorf("ToMap error %v wraps no sentinel", gotErr)
		}
		return false, nil
	case gotErr != nil:
		return false, fmt.Errorf("ToMap failed (%v) but protojson gave %s", gotErr, want)
	case wantErr != nil:
		return false, fmt.Errorf("ToMap gave %v but protojson failed: %v", got, wantErr)
	}
	gotJSON, err := json.Marshal(got)
	if err != nil {
		return false, fmt.Errorf("encoding/json cannot encode ToMap result %#v: %v", got, err)
	}
	g, err := normalise(gotJSON)
	if err != nil {
		return false, err
	}
	w, err := normalise(want)
	if err != nil {
		return false, err
	}
	if !reflect.DeepEqual(g, w) {
		return false, fmt.Errorf("ToMap → encoding/json:\n  got  %s\n  want %s (protojson)", gotJSON, want)
	}
	return true, checkTypes(got, "$")
}

// checkTypes walks a ToMap result and rejects any Go type other than the
// ones OPA takes without a JSON round trip; above all float64.
func checkTypes(v any, path string) error {
	switch x := v.(type) {
	case nil, bool, string, json.Number:
		return nil
	case map[string]any:
		for k, e := range x {
			if err := checkTypes(e, path+"."+k); err != nil {
				return err
			}
		}
		return nil
	case []any:
		for i, e := range x {
			if err := checkTypes(e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("%s: value %v has Go type %T, want nil, bool, string, json.Number, map or slice", path, v, v)
	}
}

func globalTypes() typeResolver { return protoregistry.GlobalTypes }

func TestToMapMatchesOracle(t *testing.T) {
	files := testFiles(t)
	all := messageDesc(t, files, "ztptest.All")
	legacy := messageDesc(t, files, "ztptest.Legacy")
	types := withGlobalMessages{dynamicpb.NewTypes(files)}

	// dyn builds a dynamic message from protojson text, so cases read like
	// the JSON they should render to.
	dyn := func(md protoreflect.MessageDescriptor, text string) proto.Message {
		m := dynamicpb.NewMessage(md)
		if err := (protojson.UnmarshalOptions{Resolver: types}).Unmarshal([]byte(text), m); err != nil {
			t.Fatalf("building %s from %s: %v", md.FullName(), text, err)
		}
		return m
	}
	set := func(md protoreflect.MessageDescriptor, name protoreflect.Name, v protoreflect.Value) proto.Message {
		m := dynamicpb.NewMessage(md)
		m.Set(md.Fields().ByName(name), v)
		return m
	}

	tests := []struct {
		name string
		msg  proto.Message
		// want, if set, pins the values of the top-level keys it lists in
		// the encoding/json output, as documentation (the oracle checks the
		// whole); exact pins the whole output.
		want  string
		exact bool
		// absent lists top-level keys that must not be in the output.
		absent []string
	}{
		{name: "empty generated message", msg: &grpc_testing.SimpleRequest{}, exact: true,
			want:   `{"fillGrpclbRouteType":false,"fillOauthScope":false,"fillServerId":false,"fillUsername":false,"responseSize":0,"responseType":"COMPRESSABLE"}`,
			absent: []string{"payload", "responseCompressed", "responseStatus", "expectCompressed", "orcaPerQueryReport"}},
		{name: "empty etcd-like put: every field there, at its default", msg: dynamicpb.NewMessage(messageDesc(t, files, "ztpetcd.PutRequest")), exact: true,
			want: `{"ignoreLease":false,"ignoreValue":false,"key":"","lease":"0","prevKv":false,"value":""}`},
		{name: "grpc_testing SimpleRequest", msg: &grpc_testing.SimpleRequest{
			ResponseType: grpc_testing.PayloadType_COMPRESSABLE, ResponseSize: 314159,
			Payload:      &grpc_testing.Payload{Body: []byte("hello\x00\xff")},
			FillUsername: true, ResponseCompressed: &grpc_testing.BoolValue{Value: true},
			ResponseStatus: &grpc_testing.EchoStatus{Code: 7, Message: "denied ✓"},
		}, exact: true, want: `{"fillGrpclbRouteType":false,"fillOauthScope":false,"fillServerId":false,"fillUsername":true,"payload":{"body":"aGVsbG8A/w==","type":"COMPRESSABLE"},"responseCompressed":{"value":true},"responseSize":314159,"responseStatus":{"code":7,"message":"denied ✓"},"responseType":"COMPRESSABLE"}`},
		{name: "grpc_testing maps", msg: &grpc_testing.LoadBalancerStatsResponse{
			RpcsByPeer: map[string]int32{"a": 1, "b": -2},
			RpcsByMethod: map[string]*grpc_testing.LoadBalancerStatsResponse_RpcsByPeer{
				"UnaryCall": {RpcsByPeer: map[string]int32{"x": 3}},
			},
			NumFailures: 9,
		}},
		{name: "grpc_testing repeated enums and nested", msg: &grpc_testing.ClientConfigureRequest{
			Types: []grpc_testing.ClientConfigureRequest_RpcType{0, 1, 7},
			Metadata: []*grpc_testing.ClientConfigureRequest_Metadata{
				{Type: 1, Key: "k", Value: "v"}, {},
			},
			TimeoutSec: -3,
		}},
		{name: "grpc_testing StreamingOutputCallRequest", msg: &grpc_testing.StreamingOutputCallRequest{
			ResponseParameters: []*grpc_testing.ResponseParameters{{Size: 1, IntervalUs: 2}, {}},
		}},
		{name: "64-bit ints are strings, 32-bit are numbers",
			msg:  dyn(all, `{"fInt64":"-9223372036854775808","fUint64":"18446744073709551615","fFixed64":"1","fSfixed64":"-1","fSint64":"42","fInt32":-2147483648,"fUint32":4294967295,"fSint32":-1,"fFixed32":7,"fSfixed32":-7}`),
			want: `{"fFixed32":7,"fFixed64":"1","fInt32":-2147483648,"fInt64":"-9223372036854775808","fSfixed32":-7,"fSfixed64":"-1","fSint32":-1,"fSint64":"42","fUint32":4294967295,"fUint64":"18446744073709551615"}`},
		{name: "double NaN", msg: set(all, "f_double", protoreflect.ValueOfFloat64(math.NaN())), want: `{"fDouble":"NaN"}`},
		{name: "double +Inf", msg: set(all, "f_double", protoreflect.ValueOfFloat64(math.Inf(1))), want: `{"fDouble":"Infinity"}`},
		{name: "float -Inf", msg: set(all, "f_float", protoreflect.ValueOfFloat32(float32(math.Inf(-1)))), want: `{"fFloat":"-Infinity"}`},
		{name: "double -0", msg: set(all, "f_double", protoreflect.ValueOfFloat64(math.Copysign(0, -1))), want: `{"fDouble":-0}`},
		{name: "double 1e21 exponent", msg: set(all, "f_double", protoreflect.ValueOfFloat64(1e21)), want: `{"fDouble":1e+21}`},
		{name: "double 1e20 plain", msg: set(all, "f_double", protoreflect.ValueOfFloat64(1e20)), want: `{"fDouble":100000000000000000000}`},
		{name: "double 1e-7 short exponent", msg: set(all, "f_double", protoreflect.ValueOfFloat64(1e-7)), want: `{"fDouble":1e-7}`},
		{name: "double smallest denormal", msg: set(all, "f_double", protoreflect.ValueOfFloat64(math.SmallestNonzeroFloat64)), want: `{"fDouble":5e-324}`},
		{name: "float shortest for 32 bits", msg: set(all, "f_float", protoreflect.ValueOfFloat32(0.1)), want: `{"fFloat":0.1}`},
		{name: "float max", msg: set(all, "f_float", protoreflect.ValueOfFloat32(math.MaxFloat32)), want: `{"fFloat":3.4028235e+38}`},
		{name: "float 1e-6 boundary", msg: set(all, "f_float", protoreflect.ValueOfFloat32(1e-6)), want: `{"fFloat":0.000001}`},
		{name: "enum by name, unknown by number",
			msg:  dyn(all, `{"fEnum":"GREEN","rEnum":["RED",5,"COLOR_UNSPECIFIED"]}`),
			want: `{"fEnum":"GREEN","rEnum":["RED",5,"COLOR_UNSPECIFIED"]}`},
		{name: "fields without presence at their defaults, set or not",
			msg:  dyn(all, `{"fInt32":0,"fString":"","fBool":false}`),
			want: `{"fInt32":0,"fString":"","fBool":false,"fInt64":"0","fDouble":0,"fBytes":"","fEnum":"COLOR_UNSPECIFIED","rInt32":[],"rNested":[],"mapString":{},"customName":"","snakeCase2xName":0}`},
		{name: "fields with presence absent when unset",
			msg:    dyn(all, `{}`),
			absent: []string{"oInt32", "oString", "oEnum", "oDouble", "oNested", "cString", "cNested", "cInt64", "cBytes", "fNested", "ts", "any", "st", "wInt32", "empty"}},
		{name: "proto3 optional set to its default is present",
			msg:  dyn(all, `{"oInt32":0,"oString":"","oEnum":"COLOR_UNSPECIFIED","oDouble":0}`),
			want: `{"oDouble":0,"oEnum":"COLOR_UNSPECIFIED","oInt32":0,"oString":""}`, absent: []string{"oNested"}},
		{name: "oneof member at default value is present",
			msg: dyn(all, `{"cInt64":"0"}`), want: `{"cInt64":"0"}`, absent: []string{"cString", "cNested", "cBytes"}},
		{name: "oneof message", msg: dyn(all, `{"cNested":{}}`), want: `{"cNested":{"a":0,"b":""}}`},
		{name: "defaults inside nested messages, lists and maps",
			msg:  dyn(all, `{"fNested":{},"rNested":[{},{"a":1}],"mapUint64":{"1":{}}}`),
			want: `{"fNested":{"a":0,"b":""},"rNested":[{"a":0,"b":""},{"a":1,"b":""}],"mapUint64":{"1":{"a":0,"b":""}}}`},
		{name: "bytes base64 std with padding", msg: dyn(all, `{"fBytes":"+/8=","rBytes":["","AA==","AAA="]}`),
			want: `{"fBytes":"+/8=","rBytes":["","AA==","AAA="]}`},
		{name: "every map key kind",
			msg: dyn(all, `{"mapInt32":{"-1":"a"},"mapInt64":{"-9223372036854775808":"1"},"mapUint32":{"4294967295":"AQ=="},"mapUint64":{"18446744073709551615":{"a":1}},"mapSint32":{"-5":"RED"},"mapSint64":{"5":1.5},"mapFixed32":{"0":-0.5},"mapFixed64":{"1":true},"mapSfixed32":{"-2":null},"mapSfixed64":{"-3":7},"mapBool":{"true":-1,"false":2},"mapString":{"k\"ey":"1970-01-01T00:00:01Z"}}`)},
		{name: "custom json_name and snake case with digits",
			msg: dyn(all, `{"customName":"x","snakeCase2xName":3}`), want: `{"customName":"x","snakeCase2xName":3}`},
		{name: "recursive nesting", msg: dyn(all, `{"fNested":{"a":1,"child":{"fNested":{"b":"deep","child":{}}}}}`)},
		{name: "string escapes and unicode", msg: set(all, "f_string", protoreflect.ValueOfString("<&>\"\\\u2028\x00🙂")), want: `{"fString":"\u003c\u0026\u003e\"\\\u2028\u0000🙂"}`},
		{name: "well-known types",
			msg: dyn(all, `{"ts":"2026-11-26T10:00:00.5Z","dur":"-1.000000001s","st":{"a":[1,"x",null,{"b":true}]},"val":2.5,"lv":[1,{}],"any":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"3s"},"wBool":false,"wInt32":0,"wInt64":"-1","wUint32":4,"wUint64":"18446744073709551615","wFloat":"NaN","wDouble":1e-7,"wString":"","wBytes":"AA==","fm":"a,fooBar.bazQux","empty":{},"rTs":["1970-01-01T00:00:00Z"],"rValue":[null,"s"]}`)},
		{name: "singular NullValue is a proto3 default, null", msg: set(all, "null_value", protoreflect.ValueOfEnum(0)), want: `{"nullValue":null}`},
		{name: "repeated NullValue", msg: dyn(all, `{"rNull":[null,null]}`), want: `{"rNull":[null,null]}`},
		{name: "Any of a test type resolved by the given types",
			msg: dyn(all, `{"any":{"@type":"type.googleapis.com/ztptest.All","fInt64":"3","any":{"@type":"type.googleapis.com/grpc.testing.Payload","body":"AA=="}}}`)},
		{name: "proto2 defaults, groups, extensions",
			msg:   dyn(legacy, `{"id":0,"name":"nobody","big":"5","grp":{"x":0},"unpacked":[1,2],"mood":"SAD","labels":{"a":"b"},"[ztptest.ext_name]":"e","[ztptest.ext_nums]":["1","-2"],"[ztptest.ext_self]":{"id":1}}`),
			exact: true,
			want:  `{"[ztptest.ext_name]":"e","[ztptest.ext_nums]":["1","-2"],"[ztptest.ext_self]":{"id":1,"labels":{},"moods":[],"unpacked":[]},"big":"5","grp":{"x":0},"id":0,"labels":{"a":"b"},"mood":"SAD","moods":[],"name":"nobody","unpacked":[1,2]}`},
		// proto2 optional fields have presence: unset, they are absent, not
		// their declared default ("nobody", 5), because the upstream can tell
		// (has_name()) and may act on it.
		{name: "proto2 declared defaults are absent when unset",
			msg: dyn(legacy, `{"id":1}`), exact: true, want: `{"id":1,"labels":{},"moods":[],"unpacked":[]}`,
			absent: []string{"name", "big", "mood", "grp", "child"}},
		{name: "top-level Struct", msg: &structpb.Struct{Fields: map[string]*structpb.Value{"n": structpb.NewNumberValue(1e21)}}, want: `{"n":1e+21}`},
		{name: "top-level Any", msg: mustAny(t, &grpc_testing.Payload{Body: []byte{1}}), exact: true,
			want: `{"@type":"type.googleapis.com/grpc.testing.Payload","body":"AQ==","type":"COMPRESSABLE"}`},
		{name: "Any type URL made canonical", msg: &anypb.Any{TypeUrl: "evil.example/grpc.testing.Payload", Value: wire(t, &grpc_testing.Payload{Body: []byte{1}})}, exact: true,
			want: `{"@type":"type.googleapis.com/grpc.testing.Payload","body":"AQ==","type":"COMPRESSABLE"}`},
		{name: "Any type URL without a slash", msg: &anypb.Any{TypeUrl: "grpc.testing.Payload"}, exact: true,
			want: `{"@type":"type.googleapis.com/grpc.testing.Payload","body":"","type":"COMPRESSABLE"}`},
		{name: "well-known type in an Any with a custom URL", msg: &anypb.Any{TypeUrl: "a/b/c/google.protobuf.Duration", Value: wire(t, durationpb.New(1e9))}, exact: true,
			want: `{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1s"}`},
		{name: "Any in an Any, both canonical", msg: &anypb.Any{TypeUrl: "x/google.protobuf.Any", Value: wire(t, &anypb.Any{TypeUrl: "y.example/grpc.testing.Payload"})}, exact: true,
			want: `{"@type":"type.googleapis.com/google.protobuf.Any","value":{"@type":"type.googleapis.com/grpc.testing.Payload","body":"","type":"COMPRESSABLE"}}`},
		{name: "empty Any", msg: &anypb.Any{}, exact: true, want: `{}`},
		{name: "top-level Empty", msg: &emptypb.Empty{}, exact: true, want: `{}`},
		{name: "nil generated message: its defaults, as protojson", msg: (*grpc_testing.SimpleRequest)(nil), exact: true,
			want: `{"fillGrpclbRouteType":false,"fillOauthScope":false,"fillServerId":false,"fillUsername":false,"responseSize":0,"responseType":"COMPRESSABLE"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := compareWithOracle(tc.msg, types); err != nil {
				t.Fatal(err)
			}
			got, err := toMap(tc.msg.ProtoReflect(), types, true)
			if err != nil {
				t.Fatalf("toMap: %v", err)
			}
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tc.absent {
				if _, has := got[k]; has {
					t.Errorf("%q is in %s, want it absent", k, b)
				}
			}
			if tc.want == "" {
				return
			}
			if tc.exact {
				if string(b) != tc.want {
					t.Errorf("json.Marshal(ToMap(msg)):\n got  %s\n want %s", b, tc.want)
				}
				return
			}
			var want map[string]json.RawMessage
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			for k, w := range want {
				g, err := json.Marshal(got[k])
				if _, has := got[k]; !has || err != nil {
					t.Errorf("%q missing from %s", k, b)
					continue
				}
				gn, _ := normalise(g)
				wn, _ := normalise(w)
				if !reflect.DeepEqual(gn, wn) {
					t.Errorf("%q = %s, want %s", k, g, w)
				}
			}
		})
	}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestToMapErrors(t *testing.T) {
	files := testFiles(t)
	all := messageDesc(t, files, "ztptest.All")
	legacy := messageDesc(t, files, "ztptest.Legacy")
	types := withGlobalMessages{dynamicpb.NewTypes(files)}

	legacyWith := func(fill func(m *dynamicpb.Message)) proto.Message {
		m := dynamicpb.NewMessage(legacy)
		m.Set(legacy.Fields().ByName("id"), protoreflect.ValueOfInt32(1))
		fill(m)
		return m
	}
	tests := []struct {
		name  string
		msg   proto.Message
		types typeResolver
		want  error
	}{
		{"invalid UTF-8 in a proto2 string", legacyWith(func(m *dynamicpb.Message) {
			m.Set(legacy.Fields().ByName("name"), protoreflect.ValueOfString("a\xff"))
		}), types, ErrUnrenderable},
		{"invalid UTF-8 in a proto2 map key", legacyWith(func(m *dynamicpb.Message) {
			fd := legacy.Fields().ByName("labels")
			m.Mutable(fd).Map().Set(protoreflect.ValueOfString("\xc3").MapKey(), protoreflect.ValueOfString("v"))
		}), types, ErrUnrenderable},
		{"invalid UTF-8 in a proto2 map value", legacyWith(func(m *dynamicpb.Message) {
			fd := legacy.Fields().ByName("labels")
			m.Mutable(fd).Map().Set(protoreflect.ValueOfString("k").MapKey(), protoreflect.ValueOfString("\xed\xa0\x80"))
		}), types, ErrUnrenderable},
		{"missing required field", dynamicpb.NewMessage(legacy), types, ErrUnrenderable},
		{"missing required field in a nested message", legacyWith(func(m *dynamicpb.Message) {
			m.Mutable(legacy.Fields().ByName("child"))
		}), types, ErrUnrenderable},
		{"nested timestamp out of range", func() proto.Message {
			m := dynamicpb.NewMessage(all)
			ts := m.Mutable(all.Fields().ByName("ts")).Message()
			ts.Set(ts.Descriptor().Fields().ByName("seconds"), protoreflect.ValueOfInt64(253402300800))
			return m
		}(), types, ErrUnrenderable},
		{"nested Any of an unknown type", func() proto.Message {
			m := dynamicpb.NewMessage(all)
			a := m.Mutable(all.Fields().ByName("any")).Message()
			a.Set(a.Descriptor().Fields().ByName("type_url"), protoreflect.ValueOfString("type.googleapis.com/no.Such"))
			return m
		}(), types, ErrUnrenderable},
		{"Any of a type only the request's own schema knows", func() proto.Message {
			m := dynamicpb.NewMessage(all)
			a := m.Mutable(all.Fields().ByName("any")).Message()
			a.Set(a.Descriptor().Fields().ByName("type_url"), protoreflect.ValueOfString("type.googleapis.com/ztptest.All"))
			return m
		}(), globalTypes(), ErrUnrenderable},
		{"field mask that does not round-trip", func() proto.Message {
			m := dynamicpb.NewMessage(all)
			m.Set(all.Fields().ByName("fm"), protoreflect.ValueOfMessage((&fieldmaskpb.FieldMask{Paths: []string{"fooBar"}}).ProtoReflect()))
			return m
		}(), types, ErrUnrenderable},
		{"Value holding NaN", &structpb.Struct{Fields: map[string]*structpb.Value{"x": structpb.NewNumberValue(math.NaN())}}, types, ErrUnrenderable},
		{"top-level Timestamp is not an object", timestamppb.New(timestamppb.Now().AsTime()), types, ErrNotObject},
		{"top-level wrapper is not an object", wrapperspb.String("x"), types, ErrNotObject},
		{"top-level Duration is not an object", durationpb.New(1), types, ErrNotObject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := toMap(tc.msg.ProtoReflect(), tc.types, true)
			if !errors.Is(err, tc.want) {
				t.Fatalf("toMap(%v) error = %v, want %v", tc.msg, err, tc.want)
			}
			if errors.Is(err, ErrNotObject) {
				return // protojson does print these, just not as objects
			}
			if b, perr := oracle(tc.msg, tc.types); perr == nil {
				t.Fatalf("protojson.Marshal succeeded with %s where ToMap failed: %v", b, err)
			}
		})
	}
}

func TestToMapNil(t *testing.T) {
	got, err := ToMap(nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("ToMap(nil) = %v, %v; want empty map, nil", got, err)
	}
}

// TestToMapRandomMatchesProtojson is the equivalence proof at volume:
// thousands of randomly populated messages of every test type, each rendered
// by ToMap and by protojson.
func TestToMapRandomMatchesOracle(t *testing.T) {
	files := testFiles(t)
	types := withGlobalMessages{dynamicpb.NewTypes(files)}
	newMsgs := []func() proto.Message{
		func() proto.Message { return dynamicpb.NewMessage(messageDesc(t, files, "ztptest.All")) },
		func() proto.Message { return dynamicpb.NewMessage(messageDesc(t, files, "ztptest.Legacy")) },
		func() proto.Message { return dynamicpb.NewMessage(messageDesc(t, files, "ztpetcd.TxnRequest")) },
		func() proto.Message { return &grpc_testing.SimpleRequest{} },
		func() proto.Message { return &grpc_testing.StreamingOutputCallRequest{} },
		func() proto.Message { return &grpc_testing.LoadBalancerStatsResponse{} },
		func() proto.Message { return &grpc_testing.ClientConfigureRequest{} },
		func() proto.Message { return &grpc_testing.ClientConfig{} },
		func() proto.Message { return &grpc_testing.ScenarioResult{} },
		func() proto.Message { return &structpb.Struct{} },
		func() proto.Message { return &anypb.Any{} },
	}
	n := 3000
	if testing.Short() {
		n = 300
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var failures, refused, rendered int
	for i := range n {
		m := newMsgs[i%len(newMsgs)]()
		p := &populator{rng: rng, invalid: 0.01}
		p.message(m.ProtoReflect(), 0)
		if err := compareWithOracle(m, types); err != nil {
			failures++
			t.Errorf("case %d (%s, in memory): %v", i, m.ProtoReflect().Descriptor().FullName(), err)
		}
		// Round-trip through the wire so the message is also what a decoder
		// would actually see.
		b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(m)
		if err != nil {
			refused++ // invalid UTF-8 in a proto3 string cannot go on the wire
			continue
		}
		m2 := m.ProtoReflect().New().Interface()
		if err := (proto.UnmarshalOptions{AllowPartial: true, Resolver: types}).Unmarshal(b, m2); err != nil {
			t.Fatalf("case %d: unmarshal what was just marshalled: %v", i, err)
		}
		ok, err := compareRendered(m2, types)
		if ok {
			rendered++
		}
		if err != nil {
			failures++
			t.Errorf("case %d (%s, from the wire): %v", i, m2.ProtoReflect().Descriptor().FullName(), err)
		}
		if failures > 5 {
			t.FailNow()
		}
	}
	t.Logf("%d random messages: %d rendered identically by both, %d could not go on the wire, the rest refused by both", n, rendered, refused)
	if rendered < n/2 {
		t.Errorf("only %d of %d random messages rendered; the generator is too hostile to prove much", rendered, n)
	}
	if refused > n/4 {
		t.Errorf("%d of %d random messages did not survive the wire; the generator is too hostile to prove much", refused, n)
	}
}
