package decode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wire marshals a message, or builds one from protojson text against the
// protoset's descriptors, and returns its bytes.
func wire(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %T: %v", m, err)
	}
	return b
}

func wireJSON(t testing.TB, p *Protoset, name protoreflect.FullName, text string) []byte {
	t.Helper()
	d, err := p.files.FindDescriptorByName(name)
	if err != nil {
		t.Fatal(err)
	}
	m := dynamicpb.NewMessage(d.(protoreflect.MessageDescriptor))
	if err := (protojson.UnmarshalOptions{Resolver: p.types()}).Unmarshal([]byte(text), m); err != nil {
		t.Fatalf("building %s from %s: %v", name, text, err)
	}
	return wire(t, m)
}

func TestDecode(t *testing.T) {
	p := testProtoset(t)
	d := NewDecoder(p)
	ctx := testContext(t)

	unary := MethodInfo{Known: true}
	bidi := MethodInfo{Known: true, ClientStreaming: true, ServerStreaming: true}
	withUnknownField := append(wire(t, &grpc_testing.SimpleRequest{ResponseSize: 3}),
		protowire.AppendTag(nil, 999, protowire.BytesType)...)
	withUnknownField = protowire.AppendBytes(withUnknownField, []byte("future"))

	tests := []struct {
		name     string
		method   string
		in       []byte
		wantOK   bool
		wantInfo MethodInfo
		want     string // encoding/json of the result, when ok
		wantKey  string // if set, want is the encoding of this key of the result only
		wantErr  error
	}{
		{name: "unary grpc_testing", method: "/grpc.testing.TestService/UnaryCall",
			in:     wire(t, &grpc_testing.SimpleRequest{ResponseSize: 10, Payload: &grpc_testing.Payload{Body: []byte("hi")}, FillUsername: true}),
			wantOK: true, wantInfo: unary, want: `{"fillGrpclbRouteType":false,"fillOauthScope":false,"fillServerId":false,"fillUsername":true,"payload":{"body":"aGk=","type":"COMPRESSABLE"},"responseSize":10,"responseType":"COMPRESSABLE"}`},
		{name: "bidi streaming", method: "/grpc.testing.TestService/FullDuplexCall",
			in:     wire(t, &grpc_testing.StreamingOutputCallRequest{ResponseParameters: []*grpc_testing.ResponseParameters{{Size: 5}}}),
			wantOK: true, wantInfo: bidi, want: `{"responseParameters":[{"intervalUs":0,"size":5}],"responseType":"COMPRESSABLE"}`},
		{name: "client streaming", method: "/grpc.testing.TestService/StreamingInputCall",
			in:     wire(t, &grpc_testing.StreamingInputCallRequest{}),
			wantOK: true, wantInfo: MethodInfo{Known: true, ClientStreaming: true}, want: `{}`},
		{name: "server streaming", method: "/grpc.testing.TestService/StreamingOutputCall",
			in:     nil,
			wantOK: true, wantInfo: MethodInfo{Known: true, ServerStreaming: true}, want: `{"responseParameters":[],"responseType":"COMPRESSABLE"}`},
		{name: "etcd-like put", method: "/ztpetcd.KV/Put",
			in:     wireJSON(t, p, "ztpetcd.PutRequest", `{"key":"Zm9v","value":"YmFy","lease":"7587869813298837514","prevKv":true}`),
			wantOK: true, wantInfo: unary, want: `{"ignoreLease":false,"ignoreValue":false,"key":"Zm9v","lease":"7587869813298837514","prevKv":true,"value":"YmFy"}`},
		{name: "etcd-like delete-all txn", method: "/ztpetcd.KV/Txn",
			in:     wireJSON(t, p, "ztpetcd.TxnRequest", `{"success":[{"requestDeleteRange":{"key":"AA==","rangeEnd":"AA=="}}]}`),
			wantOK: true, wantInfo: unary, want: `{"compare":[],"failure":[],"success":[{"requestDeleteRange":{"key":"AA==","prevKv":false,"rangeEnd":"AA=="}}]}`},
		{name: "proto2 extension resolved from the protoset", method: "/ztptest.Admin/Old",
			in:     wireJSON(t, p, "ztptest.Legacy", `{"id":1,"[ztptest.ext_name]":"x"}`),
			wantOK: true, wantInfo: unary, want: `{"[ztptest.ext_name]":"x","id":1,"labels":{},"moods":[],"unpacked":[]}`},
		{name: "Any of a protoset type", method: "/ztptest.Admin/Do",
			in:     wireJSON(t, p, "ztptest.All", `{"any":{"@type":"type.googleapis.com/ztptest.Legacy","id":2}}`),
			wantOK: true, wantInfo: unary, wantKey: "any", want: `{"@type":"type.googleapis.com/ztptest.Legacy","id":2,"labels":{},"moods":[],"unpacked":[]}`},
		{name: "unknown fields ignored", method: "/grpc.testing.TestService/UnaryCall",
			in: withUnknownField, wantOK: true, wantInfo: unary, want: `{"fillGrpclbRouteType":false,"fillOauthScope":false,"fillServerId":false,"fillUsername":false,"responseSize":3,"responseType":"COMPRESSABLE"}`},
		{name: "Empty input", method: "/ztptest.Admin/Nothing", in: wire(t, &emptypb.Empty{}),
			wantOK: true, wantInfo: unary, want: `{}`},
		{name: "bytes that do not parse", method: "/grpc.testing.TestService/UnaryCall",
			in: []byte{0xff, 0xff, 0xff}, wantInfo: unary, wantErr: ErrUndecodable},
		{name: "truncated message", method: "/grpc.testing.TestService/UnaryCall",
			in: wire(t, &grpc_testing.SimpleRequest{Payload: &grpc_testing.Payload{Body: []byte("truncate me")}})[:5], wantInfo: unary, wantErr: ErrUndecodable},
		// The upstream's parser sees a known field with the wrong wire type
		// as an unknown field too, so the policy sees what the upstream sees.
		{name: "wrong wire type is an unknown field", method: "/grpc.testing.TestService/UnaryCall",
			in: protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 1), wantOK: true, wantInfo: unary, wantKey: "payload", want: `null`},
		{name: "invalid UTF-8 in a proto3 string", method: "/ztptest.Admin/Do",
			in: protowire.AppendString(protowire.AppendTag(nil, 9, protowire.BytesType), "\xff"), wantInfo: unary, wantErr: ErrUndecodable},
		{name: "invalid UTF-8 in a proto2 string", method: "/ztptest.Admin/Old",
			in:       protowire.AppendString(protowire.AppendTag(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1), 2, protowire.BytesType), "\xff"),
			wantInfo: unary, wantErr: ErrUnrenderable},
		// Found by FuzzDecode: proto.Unmarshal of google.golang.org/protobuf
		// v1.36.12 panics on a dynamic message whose map entry repeats its key
		// with a wrong wire type. The pre-scan refuses the repeated key before
		// the runtime sees it (TestDecodeAllowDuplicates: Decode survives the
		// panic when duplicates are allowed).
		{name: "map entry that panics the protobuf runtime", method: "/ztptest.Admin/Do",
			in: panickingMapEntry, wantInfo: unary, wantErr: ErrAmbiguous},
		{name: "missing required field", method: "/ztptest.Admin/Old", in: nil, wantInfo: unary, wantErr: ErrUndecodable},
		{name: "input whose protojson form is not an object", method: "/ztptest.Admin/When",
			in: wire(t, timestamppb.New(time.Unix(0, 0))), wantInfo: unary, wantErr: ErrNotObject},
		{name: "unknown method", method: "/grpc.testing.TestService/Nope", in: nil, wantErr: ErrUnknownMethod},
		{name: "unknown service", method: "/nope.Service/Call", in: nil, wantErr: ErrUnknownService},
		{name: "malformed method name", method: "UnaryCall", in: nil, wantErr: ErrBadMethodName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, info, ok := d.Decode(ctx, tc.method, tc.in)
			if ok != tc.wantOK || info != tc.wantInfo {
				t.Fatalf("Decode(%s) ok=%v info=%+v; want ok=%v info=%+v", tc.method, ok, info, tc.wantOK, tc.wantInfo)
			}
			if d.Info(ctx, tc.method) != tc.wantInfo {
				t.Errorf("Info(%s) = %+v, want %+v", tc.method, d.Info(ctx, tc.method), tc.wantInfo)
			}
			_, _, err := d.DecodeErr(ctx, tc.method, tc.in)
			if !ok {
				if req != nil {
					t.Errorf("Decode(%s) req = %v with ok=false, want nil", tc.method, req)
				}
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("DecodeErr(%s) error = %v, want %v", tc.method, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Errorf("DecodeErr(%s) error = %v after Decode succeeded", tc.method, err)
			}
			var b []byte
			if tc.wantKey != "" {
				b, err = json.Marshal(req[tc.wantKey])
			} else {
				b, err = json.Marshal(req)
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("Decode(%s) → json:\n got  %s\n want %s", tc.method, b, tc.want)
			}
			if err := checkTypes(req, "$"); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestDecodeDoesNotTouchInput proves decoding is read-only: the proxy
// forwards the very bytes it decoded.
func TestDecodeDoesNotTouchInput(t *testing.T) {
	d := NewDecoder(testProtoset(t))
	in := wire(t, &grpc_testing.SimpleRequest{Payload: &grpc_testing.Payload{Body: []byte("payload")}, ResponseSize: 1})
	orig := append([]byte(nil), in...)
	req, _, ok := d.Decode(testContext(t), "/grpc.testing.TestService/UnaryCall", in)
	if !ok {
		t.Fatal("Decode failed")
	}
	req["payload"].(map[string]any)["body"] = "changed"
	if string(in) != string(orig) {
		t.Fatalf("input bytes changed by Decode: got %x, want %x", in, orig)
	}
}

// stubResolver hands out a given descriptor, to exercise the Decoder's
// per-method cache when a resolver's descriptors change (a refresh).
type stubResolver struct {
	mu sync.Mutex
	md protoreflect.MethodDescriptor
}

func (s *stubResolver) FindMethod(context.Context, string) (protoreflect.MethodDescriptor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.md, nil
}

func TestDecodeFollowsNewDescriptors(t *testing.T) {
	ctx := testContext(t)
	svc := grpc_testing.File_grpc_testing_test_proto.Services().ByName("TestService")
	r := &stubResolver{md: svc.Methods().ByName("UnaryCall")}
	d := NewDecoder(r)
	in := wire(t, &grpc_testing.StreamingOutputCallRequest{ResponseParameters: []*grpc_testing.ResponseParameters{{Size: 1}}})
	const method = "/grpc.testing.TestService/Whatever"
	if info := d.Info(ctx, method); info.ClientStreaming {
		t.Fatalf("Info before = %+v, want unary", info)
	}
	r.mu.Lock()
	r.md = svc.Methods().ByName("FullDuplexCall")
	r.mu.Unlock()
	req, info, ok := d.Decode(ctx, method, in)
	if !ok || !info.ClientStreaming {
		t.Fatalf("Decode after the resolver changed = %v, %+v, %v; want the new descriptor's shape", req, info, ok)
	}
	if _, has := req["responseParameters"]; !has {
		t.Fatalf("Decode after the resolver changed = %v, want responseParameters", req)
	}
}

func TestDecodeConcurrent(t *testing.T) {
	d := NewDecoder(testProtoset(t))
	ctx := testContext(t)
	in := wire(t, &grpc_testing.SimpleRequest{ResponseSize: 42})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for range 200 {
				req, _, ok := d.Decode(ctx, "/grpc.testing.TestService/UnaryCall", in)
				if !ok || req["responseSize"] != json.Number("42") {
					errs <- fmt.Errorf("Decode = %v, %v; want responseSize 42", req, ok)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// panickingMapEntry is map_int32 (field 70) with an entry whose key occurs
// twice, the second time with the wrong wire type.
var panickingMapEntry = []byte{0xb2, 0x04, 0x04, 0x08, 0x01, 0x0a, 0x00}

// FuzzDecode feeds arbitrary bytes to every test method. It must never
// panic, and whenever the bytes parse, Decode must agree with protojson on
// both the rendering and whether there is one. The pre-scan must refuse a
// message as ambiguous exactly when an independent check (refDuplicate)
// finds a repeated non-repeated field, and must otherwise decide as the
// decoder that allows duplicates does; with small limits it may only refuse
// as too complex.
func FuzzDecode(f *testing.F) {
	p := testProtoset(f)
	unlimited := WithLimits(1<<30, MaxDepthCeiling)
	d := NewDecoder(p, unlimited, AllowDuplicateFields())
	strict := NewDecoder(p, unlimited)
	small := NewDecoder(p, WithLimits(16, 3))
	types := withGlobalMessages{p.types()}
	methods := []string{
		"/ztptest.Admin/Do",
		"/ztptest.Admin/Old",
		"/ztpetcd.KV/Txn",
		"/grpc.testing.TestService/UnaryCall",
		"/grpc.testing.TestService/FullDuplexCall",
	}
	rng := newSeededPopulator()
	for i, method := range methods {
		md, err := p.FindMethod(context.Background(), method)
		if err != nil {
			f.Fatal(err)
		}
		for range 8 {
			m := dynamicpb.NewMessage(md.Input())
			rng.message(m, 0)
			b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(m)
			if err != nil {
				continue
			}
			f.Add(uint8(i), b)
		}
		f.Add(uint8(i), []byte{})
		f.Add(uint8(i), []byte{0x0a, 0x02, 0x08, 0x01})
	}
	// A map entry without its message value renders that message's defaults.
	f.Add(uint8(0), lenField(73, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 7)))
	for _, tc := range ambiguousCases(f, p) {
		f.Add(uint8(slices.Index(methods, tc.method)), tc.in)
	}
	f.Fuzz(func(t *testing.T, sel uint8, b []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		method := methods[int(sel)%len(methods)]
		req, info, err := d.DecodeErr(ctx, method, b)
		if !info.Known {
			t.Fatalf("DecodeErr(%s) info = %+v, want Known", method, info)
		}
		md, _ := p.FindMethod(ctx, method)
		if errors.Is(err, ErrAmbiguous) || errors.Is(err, ErrTooComplex) {
			t.Fatalf("DecodeErr(%s, %x) with duplicates allowed and no limits: %v", method, b, err)
		}
		sreq, _, serr := strict.DecodeErr(ctx, method, b)
		dup := refDuplicate(md.Input(), b, types)
		switch {
		case errors.Is(serr, ErrAmbiguous):
			if !dup {
				t.Fatalf("DecodeErr(%s, %x) = %v, but refDuplicate finds no duplicate", method, b, serr)
			}
		case serr == nil && dup:
			t.Fatalf("DecodeErr(%s, %x) accepted a message with a duplicate field", method, b)
		case Reason(serr) != Reason(err) || !reflect.DeepEqual(sreq, req):
			t.Fatalf("DecodeErr(%s, %x) = %v, %v; with duplicates allowed %v, %v", method, b, sreq, serr, req, err)
		}
		// The scan counts at least the nodes the request renders: what passes
		// limits.max_decoded_nodes costs no more than that to judge.
		if r := renderedNodes(sreq); serr == nil && r >= 2 {
			if _, _, e := NewDecoder(p, WithLimits(r-1, MaxDepthCeiling)).DecodeErr(ctx, method, b); !errors.Is(e, ErrTooComplex) {
				t.Fatalf("DecodeErr(%s, %x) renders %d nodes, but the scan admits it with a limit of %d (%v)", method, b, r, r-1, e)
			}
		}
		if mreq, _, merr := small.DecodeErr(ctx, method, b); !errors.Is(merr, ErrTooComplex) &&
			(Reason(merr) != Reason(serr) || !reflect.DeepEqual(mreq, sreq)) {
			t.Fatalf("DecodeErr(%s, %x) with small limits = %v, %v; without %v, %v", method, b, mreq, merr, sreq, serr)
		}
		ref := dynamicpb.NewMessage(md.Input())
		if uerr := unmarshalNoPanic(b, ref, types); uerr != nil {
			if !errors.Is(err, ErrUndecodable) {
				t.Fatalf("DecodeErr(%s, %x) = %v, %v; proto.Unmarshal failed (%v), want ErrUndecodable", method, b, req, err, uerr)
			}
			return
		}
		// What the scan accepts, every runtime reads alike: protobuf-go's
		// merging parse equals one where each non-repeated field's last
		// occurrence replaces the earlier ones (as gogo's does).
		if serr == nil {
			if lw, lerr := lastWins(md.Input(), b, types); lerr != nil || !proto.Equal(ref.Interface(), lw.Interface()) {
				t.Fatalf("DecodeErr(%s, %x) accepted it, but a last-one-wins parse differs (%v):\n merged %v\n last   %v", method, b, lerr, ref, lw)
			}
		}
		want, werr := oracle(ref, types)
		if werr != nil {
			if !errors.Is(err, ErrUnrenderable) {
				t.Fatalf("DecodeErr(%s, %x) = %v, %v; protojson failed (%v), want ErrUnrenderable", method, b, req, err, werr)
			}
			return
		}
		if err != nil {
			t.Fatalf("DecodeErr(%s, %x) failed: %v; protojson gave %s", method, b, err, want)
		}
		got, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("encoding/json cannot encode %#v: %v", req, err)
		}
		g, err := normalise(got)
		if err != nil {
			t.Fatal(err)
		}
		w, err := normalise(want)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("DecodeErr(%s, %x):\n got  %s\n want %s (protojson)", method, b, got, want)
		}
		if err := checkTypes(req, "$"); err != nil {
			t.Fatal(err)
		}
		// DecodeUnknown reports unknown fields whenever parsing without them
		// gives a different message. (It may report more: DiscardUnknown does
		// not look inside the bytes an Any packs, DecodeUnknown does.)
		_, unknown, _, uerr := d.DecodeUnknown(ctx, method, b)
		if uerr != nil {
			t.Fatalf("DecodeUnknown(%s, %x) failed where DecodeErr succeeded", method, b)
		}
		known := dynamicpb.NewMessage(md.Input())
		if err := (proto.UnmarshalOptions{DiscardUnknown: true, AllowPartial: true, Resolver: types}).Unmarshal(b, known); err != nil {
			t.Fatalf("unmarshal without unknown fields: %v", err)
		}
		if !proto.Equal(ref, known) && len(unknown) == 0 {
			t.Fatalf("DecodeUnknown(%s, %x) reports no unknown fields, but parsing without them changes the message", method, b)
		}
	})
}

// refDuplicate is the rule the pre-scan enforces, stated independently:
// count each message's field numbers and oneofs in maps and report whether
// a non-repeated field or a oneof occurs twice, in the message, in those it
// contains (groups and map entries too) or in what an Any packs. It bounds
// nothing and stops at the first bytes that do not parse.
func refDuplicate(md protoreflect.MessageDescriptor, b []byte, types typeResolver) bool {
	fields := map[protowire.Number]int{}
	oneofs := map[protoreflect.FullName]int{}
	var url, value []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return false
		}
		_, _, tagLen := protowire.ConsumeTag(b)
		val := b[tagLen:n]
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil && md.ExtensionRanges().Has(num) {
			if xt, err := types.FindExtensionByNumber(md.FullName(), num); err == nil {
				fd = xt.TypeDescriptor()
			}
		}
		if fd == nil {
			continue
		}
		if fd.Cardinality() != protoreflect.Repeated {
			fields[num]++
			if od := fd.ContainingOneof(); od != nil {
				oneofs[od.FullName()]++
				if oneofs[od.FullName()] > 1 {
					return true
				}
			}
			if fields[num] > 1 {
				return true
			}
		}
		var sub []byte
		switch {
		case typ == protowire.BytesType && fd.Kind() == protoreflect.MessageKind:
			sub, _ = protowire.ConsumeBytes(val)
		case typ == protowire.StartGroupType && fd.Kind() == protoreflect.GroupKind:
			sub, _ = protowire.ConsumeGroup(num, val)
		default:
			if md.FullName() == "google.protobuf.Any" && typ == protowire.BytesType {
				v, _ := protowire.ConsumeBytes(val)
				if num == 1 {
					url = v
				} else {
					value = v
				}
			}
			continue
		}
		if refDuplicate(fd.Message(), sub, types) {
			return true
		}
	}
	if len(url) > 0 {
		if mt, err := types.FindMessageByURL(string(url)); err == nil {
			return refDuplicate(mt.Descriptor(), value, types)
		}
	}
	return false
}

// lastWins parses b as md the way gogo-generated code does: a later
// occurrence of a non-repeated field, or of another member of its oneof,
// replaces the earlier one, message fields included (protobuf-go merges
// those), in list elements and map entries too. Other lists, extensions and
// unknown fields are merged by protobuf-go itself, one field at a time.
func lastWins(md protoreflect.MessageDescriptor, b []byte, types typeResolver) (protoreflect.Message, error) {
	m := dynamicpb.NewMessage(md)
	merge := proto.UnmarshalOptions{Merge: true, AllowPartial: true, Resolver: types}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		raw := b[:n]
		_, _, tagLen := protowire.ConsumeTag(b)
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		v, _ := protowire.ConsumeBytes(raw[tagLen:]) // the body, when typ is BytesType
		switch {
		case fd == nil:
		case fd.IsMap() && typ == protowire.BytesType:
			entry, err := lastWins(fd.Message(), v, types)
			if err != nil {
				return nil, err
			}
			mp := m.Mutable(fd).Map()
			val := mp.NewValue()
			if entry.Has(fd.MapValue()) {
				val = entry.Get(fd.MapValue())
			}
			mp.Set(entry.Get(fd.MapKey()).MapKey(), val)
			continue
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind && typ == protowire.BytesType:
			elem, err := lastWins(fd.Message(), v, types)
			if err != nil {
				return nil, err
			}
			m.Mutable(fd).List().Append(protoreflect.ValueOfMessage(elem))
			continue
		}
		if fd == nil || fd.IsList() || fd.IsMap() {
			if err := merge.Unmarshal(raw, m.Interface()); err != nil {
				return nil, err
			}
			continue
		}
		if od := fd.ContainingOneof(); od != nil {
			if w := m.WhichOneof(od); w != nil {
				m.Clear(w)
			}
		}
		m.Clear(fd)
		var sub protoreflect.Message
		var err error
		switch {
		case fd.Kind() == protoreflect.MessageKind && typ == protowire.BytesType:
			sub, err = lastWins(fd.Message(), v, types)
		case fd.Kind() == protoreflect.GroupKind && typ == protowire.StartGroupType:
			v, _ := protowire.ConsumeGroup(num, raw[tagLen:])
			sub, err = lastWins(fd.Message(), v, types)
		default:
			err = merge.Unmarshal(raw, m.Interface())
		}
		if err != nil {
			return nil, err
		}
		if sub != nil {
			m.Set(fd, protoreflect.ValueOfMessage(sub))
		}
	}
	return m, nil
}

// unmarshalNoPanic is the fuzz reference parse; the protobuf runtime itself
// panics on some inputs for dynamic messages (see TestDecode).
func unmarshalNoPanic(b []byte, m proto.Message, types typeResolver) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("proto.Unmarshal panicked: %v", p)
		}
	}()
	return proto.UnmarshalOptions{Resolver: types}.Unmarshal(b, m)
}

// TestDecodeUnknown: fields the descriptors do not know are left out of the
// rendered request, and DecodeUnknown says where they were, also inside
// nested messages and lists.
func TestDecodeUnknown(t *testing.T) {
	d := NewDecoder(testProtoset(t))
	ctx := testContext(t)
	unknown := func(b []byte, num protowire.Number) []byte {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		return protowire.AppendBytes(b, []byte("future"))
	}
	// payload (field 3) with an unknown field 9 inside it, then unknown fields
	// 999 and 77 (twice) at the top.
	payload := unknown(wire(t, &grpc_testing.Payload{Body: []byte("hi")}), 9)
	in := wire(t, &grpc_testing.SimpleRequest{ResponseSize: 3})
	in = protowire.AppendTag(in, 3, protowire.BytesType)
	in = protowire.AppendBytes(in, payload)
	in = unknown(unknown(unknown(in, 999), 77), 77)

	req, got, info, err := d.DecodeUnknown(ctx, "/grpc.testing.TestService/UnaryCall", in)
	if err != nil || !info.Known {
		t.Fatalf("DecodeUnknown: %v, info %+v", err, info)
	}
	if b, _ := json.Marshal(req); string(b) != `{"fillGrpclbRouteType":false,"fillOauthScope":false,"fillServerId":false,"fillUsername":false,"payload":{"body":"aGk=","type":"COMPRESSABLE"},"responseSize":3,"responseType":"COMPRESSABLE"}` {
		t.Errorf("request = %s, want the known fields only", b)
	}
	if want := []string{"77", "999", "payload.9"}; !reflect.DeepEqual(got, want) {
		t.Errorf("unknown = %q, want %q", got, want)
	}

	// In a list: responseParameters (field 2 of StreamingOutputCallRequest).
	param := unknown(wire(t, &grpc_testing.ResponseParameters{Size: 5}), 12)
	var list []byte
	for range 2 {
		list = protowire.AppendTag(list, 2, protowire.BytesType)
		list = protowire.AppendBytes(list, param)
	}
	_, got, _, err = d.DecodeUnknown(ctx, "/grpc.testing.TestService/FullDuplexCall", list)
	if want := []string{"responseParameters.12"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("unknown in a list = %q (%v), want %q", got, err, want)
	}

	_, got, _, err = d.DecodeUnknown(ctx, "/grpc.testing.TestService/UnaryCall", wire(t, &grpc_testing.SimpleRequest{ResponseSize: 3}))
	if err != nil || got != nil {
		t.Errorf("unknown without unknown fields = %q (%v), want none", got, err)
	}
}

// TestDecodeUnknownInAny: protojson renders a google.protobuf.Any's packed
// message inline and drops its unknown fields, so they are reported too.
func TestDecodeUnknownInAny(t *testing.T) {
	p := testProtoset(t)
	d := NewDecoder(p)
	ctx := testContext(t)
	allDesc, err := p.files.FindDescriptorByName("ztptest.All")
	if err != nil {
		t.Fatal(err)
	}
	anyField := allDesc.(protoreflect.MessageDescriptor).Fields().ByName("any")
	pack := func(url string, value []byte) []byte {
		var a []byte
		a = protowire.AppendTag(a, 1, protowire.BytesType)
		a = protowire.AppendString(a, url)
		a = protowire.AppendTag(a, 2, protowire.BytesType)
		a = protowire.AppendBytes(a, value)
		var b []byte
		b = protowire.AppendTag(b, anyField.Number(), protowire.BytesType)
		return protowire.AppendBytes(b, a)
	}
	payload := wire(t, &grpc_testing.Payload{Body: []byte("hi")})
	payload = protowire.AppendTag(payload, 9, protowire.VarintType)
	payload = protowire.AppendVarint(payload, 1)

	req, unknown, _, err := d.DecodeUnknown(ctx, "/ztptest.Admin/Do", pack("type.googleapis.com/grpc.testing.Payload", payload))
	if err != nil {
		t.Fatalf("DecodeUnknown: %v", err)
	}
	if b, _ := json.Marshal(req["any"]); string(b) != `{"@type":"type.googleapis.com/grpc.testing.Payload","body":"aGk=","type":"COMPRESSABLE"}` {
		t.Errorf("request = %s", b)
	}
	if want := []string{"any.9"}; !reflect.DeepEqual(unknown, want) {
		t.Errorf("unknown = %q, want %q", unknown, want)
	}
	_, unknown, _, err = d.DecodeUnknown(ctx, "/ztptest.Admin/Do", pack("type.googleapis.com/grpc.testing.Payload", wire(t, &grpc_testing.Payload{Body: []byte("hi")})))
	if err != nil || unknown != nil {
		t.Errorf("Any without unknown fields: unknown = %q (%v), want none", unknown, err)
	}
}

// renderedNodes counts a rendered request as the pre-scan counts its wire
// form: one node per object member, a list member one per element (one when
// empty), plus what each value holds.
func renderedNodes(v any) int {
	n := 0
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			if l, ok := e.([]any); ok {
				n += max(1, len(l)) + renderedNodes(l) - len(l)
				continue
			}
			n += 1 + renderedNodes(e)
		}
	case []any:
		for _, e := range x {
			n += 1 + renderedNodes(e)
		}
	}
	return n
}
