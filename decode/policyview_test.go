package decode

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ztp-dev/ztp/policy"
)

// naivePolicy is what a policy author writes from the README, without
// knowing protojson: it compares the zero value and the canonical type URL.
const naivePolicy = `package ztp

default allow := true

forbid contains "no default route" if {
	input.request.path.nlri["@type"] == "type.googleapis.com/apipb.IPAddressPrefix"
	input.request.path.nlri.prefixLen == 0
}

forbid contains "only the global table" if input.request.tableType != "GLOBAL"
`

// TestNaiveRulesSeeWhatUpstreamDecodes: the requests `gobgp global rib add`
// sends, decoded as the proxy decodes them and decided by the real OPA. A rule
// that compares a field with its zero value fires whether the zero was left
// out (as every encoder does in proto3) or sent, and a rule that compares
// "@type" with the canonical URL fires whatever URL the caller chose, since
// the upstream decodes the type named after the last '/'.
func TestNaiveRulesSeeWhatUpstreamDecodes(t *testing.T) {
	p := testProtoset(t)
	d := NewDecoder(p)
	ctx := testContext(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gobgp.rego"), []byte(naivePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	eng, err := policy.Load(ctx, policy.Options{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	desc := func(name protoreflect.FullName) protoreflect.MessageDescriptor {
		d, err := p.files.FindDescriptorByName(name)
		if err != nil {
			t.Fatal(err)
		}
		return d.(protoreflect.MessageDescriptor)
	}
	// prefix packs an IPAddressPrefix under a type URL; extra is appended to
	// its bytes (an explicitly encoded zero, for instance).
	prefix := func(url, addr string, length uint32, extra []byte) *anypb.Any {
		m := dynamicpb.NewMessage(desc("apipb.IPAddressPrefix"))
		m.Set(m.Descriptor().Fields().ByName("prefix"), protoreflect.ValueOfString(addr))
		m.Set(m.Descriptor().Fields().ByName("prefix_len"), protoreflect.ValueOfUint32(length))
		return &anypb.Any{TypeUrl: url, Value: append(wire(t, m), extra...)}
	}
	origin := dynamicpb.NewMessage(desc("apipb.OriginAttribute")) // origin 0: IGP
	request := func(nlri *anypb.Any) []byte {
		text := `{"path":{"family":{"afi":"AFI_IP","safi":"SAFI_UNICAST"}}}`
		b := wireJSON(t, p, "apipb.AddPathRequest", text)
		var path []byte
		path = protowire.AppendTag(path, 1, protowire.BytesType)
		path = protowire.AppendBytes(path, wire(t, nlri))
		path = protowire.AppendTag(path, 2, protowire.BytesType)
		path = protowire.AppendBytes(path, wire(t, &anypb.Any{TypeUrl: "type.googleapis.com/apipb.OriginAttribute", Value: wire(t, origin)}))
		// A second occurrence of the path field merges into the first, as
		// the upstream parses it too.
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		return protowire.AppendBytes(b, path)
	}
	explicitZero := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 0)

	tests := []struct {
		name string
		nlri *anypb.Any
		want []string // forbid reasons
	}{
		{"0.0.0.0/0, prefixLen left out", prefix("type.googleapis.com/apipb.IPAddressPrefix", "0.0.0.0", 0, nil), []string{"no default route"}},
		{"0.0.0.0/0, prefixLen sent as 0", prefix("type.googleapis.com/apipb.IPAddressPrefix", "0.0.0.0", 0, explicitZero), []string{"no default route"}},
		{"0.0.0.0/0 under another host's type URL", prefix("evil.example/apipb.IPAddressPrefix", "0.0.0.0", 0, nil), []string{"no default route"}},
		{"0.0.0.0/0 under a type URL without a host", prefix("apipb.IPAddressPrefix", "0.0.0.0", 0, nil), []string{"no default route"}},
		{"0.0.0.0/0 under a type URL with a path", prefix("type.googleapis.com/x/y/apipb.IPAddressPrefix", "0.0.0.0", 0, nil), []string{"no default route"}},
		{"10.0.0.0/8", prefix("evil.example/apipb.IPAddressPrefix", "10.0.0.0", 8, nil), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, unknown, _, err := d.DecodeUnknown(ctx, "/apipb.GobgpApi/AddPath", request(tc.nlri))
			if err != nil || len(unknown) > 0 {
				t.Fatalf("DecodeUnknown: %v, unknown %q", err, unknown)
			}
			if got := req["tableType"]; got != "GLOBAL" {
				t.Errorf("tableType = %v, want GLOBAL (the enum's zero value)", got)
			}
			attrs := req["path"].(map[string]any)["pattrs"].([]any)
			if o := attrs[0].(map[string]any); o["origin"] == nil || o["@type"] != "type.googleapis.com/apipb.OriginAttribute" {
				t.Errorf("origin attribute = %v, want origin 0 present", o)
			}
			res, err := eng.Eval(ctx, map[string]any{"request": req, "request_decoded": true})
			v := policy.Decide(res, err, policy.Enforce, "")
			if !slices.Equal(res.Forbid, tc.want) {
				t.Errorf("forbid = %q (verdict %+v, request %v), want %q", res.Forbid, v, req, tc.want)
			}
		})
	}
}

// TestAnyTypeURLsThatNameNoType: a type URL that does not name a type the
// descriptors know, including one that ends in '/', leaves the message
// undecodable, so the policy decides on request_decoded=false.
func TestAnyTypeURLsThatNameNoType(t *testing.T) {
	p := testProtoset(t)
	d := NewDecoder(p)
	ctx := testContext(t)
	anyField := messageDesc(t, p.files, "ztptest.All").Fields().ByName("any")
	for _, a := range []*anypb.Any{
		{TypeUrl: "type.googleapis.com/", Value: []byte{8, 1}},
		{TypeUrl: "type.googleapis.com/apipb.IPAddressPrefix/"},
		{TypeUrl: "type.googleapis.com/apipb.NoSuchType"},
		{TypeUrl: "type.googleapis.com/apipb.IPAddressPrefix?x=1"},
		{TypeUrl: "type.googleapis.com/apipb", Value: []byte{8, 1}},
		{Value: []byte{8, 1}}, // a value with no type URL
	} {
		b := protowire.AppendTag(nil, anyField.Number(), protowire.BytesType)
		b = protowire.AppendBytes(b, wire(t, a))
		_, _, err := d.DecodeErr(ctx, "/ztptest.Admin/Do", b)
		if !errors.Is(err, ErrUnrenderable) {
			t.Errorf("Any %q: DecodeErr error = %v, want ErrUnrenderable", a.TypeUrl, err)
		}
	}
}

// TestAnyNestingBounded: Anys inside Anys are parsed one level at a time, each
// into a copy of its bytes; thousands of levels are refused with an error, not
// rendered at the cost of the square of their size, and messages nested deeper
// than protobuf-go's recursion limit across Anys are refused too.
func TestAnyNestingBounded(t *testing.T) {
	p := testProtoset(t)
	d := NewDecoder(p)
	ctx := testContext(t)
	all := messageDesc(t, p.files, "ztptest.All")
	anyField := all.Fields().ByName("any")
	nested := all.Fields().ByName("f_nested").Number()
	child := all.Fields().ByName("f_nested").Message().Fields().ByName("child").Number()
	// wrap builds levels of (field, header) around inner from the inside
	// out, header by header, so that nothing is copied once per level.
	type level struct {
		num    protowire.Number
		prefix []byte // what precedes the length-delimited inner message
	}
	wrap := func(levels []level, inner []byte) []byte {
		headers := make([][]byte, len(levels))
		size := len(inner)
		for i := len(levels) - 1; i >= 0; i-- {
			h := append([]byte(nil), levels[i].prefix...)
			h = protowire.AppendTag(h, levels[i].num, protowire.BytesType)
			h = protowire.AppendVarint(h, uint64(size))
			headers[i] = h
			size += len(h)
		}
		var b []byte
		for _, h := range headers {
			b = append(b, h...)
		}
		return append(b, inner...)
	}
	anyLevel := level{num: 2, prefix: protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "/google.protobuf.Any")}
	anys := func(n int) []level {
		ls := []level{{num: anyField.Number()}}
		for range n {
			ls = append(ls, anyLevel)
		}
		return ls
	}
	if _, _, err := d.DecodeErr(ctx, "/ztptest.Admin/Do", wrap(anys(50), nil)); err != nil {
		t.Fatalf("50 nested Anys: %v", err)
	}
	_, _, err := d.DecodeErr(ctx, "/ztptest.Admin/Do", wrap(anys(maxDepth), nil))
	if !errors.Is(err, ErrUnrenderable) {
		t.Fatalf("%d nested Anys: error = %v, want ErrUnrenderable", maxDepth, err)
	}

	// 6,000 levels of All.fNested.child outside an Any holding an All
	// nested 6,000 levels more: each parse is within protobuf-go's limit,
	// the whole is not.
	plain := func(pairs int) []level {
		var ls []level
		for range pairs {
			ls = append(ls, level{num: nested}, level{num: child})
		}
		return ls
	}
	allURL := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "type.googleapis.com/ztptest.All")
	deep := wrap(append(plain(3000), level{num: anyField.Number()}, level{num: 2, prefix: allURL}), wrap(plain(3000), nil))
	_, _, err = d.DecodeErr(ctx, "/ztptest.Admin/Do", deep)
	if !errors.Is(err, ErrUnrenderable) {
		t.Fatalf("12,000 levels across an Any: error = %v, want ErrUnrenderable", err)
	}
	shallow := wrap(append(plain(10), level{num: anyField.Number()}, level{num: 2, prefix: allURL}), wrap(plain(10), nil))
	if _, _, err := d.DecodeErr(ctx, "/ztptest.Admin/Do", shallow); err != nil {
		t.Fatalf("40 levels across an Any: %v", err)
	}
}
