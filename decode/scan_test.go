package decode

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// lenField is field num holding body, as a message, bytes or string field.
func lenField(num protowire.Number, body ...[]byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, slices.Concat(body...))
}

// anyOf packs value as a google.protobuf.Any of the named type.
func anyOf(typeName string, value ...[]byte) []byte {
	return slices.Concat(lenField(1, []byte("type.googleapis.com/"+typeName)), lenField(2, value...))
}

// ambiguousCases are messages in which a non-repeated field occurs twice,
// each with the path the refusal must name.
func ambiguousCases(t testing.TB, p *Protoset) []struct {
	name, method string
	in           []byte
	path, oneof  string
} {
	j := func(name protoreflect.FullName, text string) []byte { return wireJSON(t, p, name, text) }
	countOnly := j("ztpetcd.RangeRequest", `{"key":"L3NlY3JldC8=","rangeEnd":"L3NlY3JldDA=","countOnly":true}`)
	rangeAll := j("ztpetcd.RangeRequest", `{"key":"L3NlY3JldC8=","rangeEnd":"L3NlY3JldDA="}`)
	legacyID := j("ztptest.Legacy", `{"id":1}`)
	nestedA := j("ztptest.All.Nested", `{"a":1}`)
	group := func(body ...[]byte) []byte {
		b := protowire.AppendTag(nil, 4, protowire.StartGroupType)
		b = append(b, slices.Concat(body...)...)
		return protowire.AppendTag(b, 4, protowire.EndGroupType)
	}
	x := protowire.AppendVarint(protowire.AppendTag(nil, 5, protowire.VarintType), 7)
	return []struct {
		name, method string
		in           []byte
		path, oneof  string
	}{
		{name: "duplicate scalar", method: "/ztpetcd.KV/Put",
			in:   slices.Concat(j("ztpetcd.PutRequest", `{"key":"YQ==","ignoreValue":true}`), j("ztpetcd.PutRequest", `{"ignoreValue":true}`)),
			path: "ignoreValue"},
		{name: "duplicate scalar, second with another wire type", method: "/ztpetcd.KV/Put",
			in:   slices.Concat(j("ztpetcd.PutRequest", `{"ignoreValue":true}`), lenField(5, []byte{1})),
			path: "ignoreValue"},
		{name: "duplicate bytes", method: "/ztpetcd.KV/Put",
			in:   slices.Concat(j("ztpetcd.PutRequest", `{"key":"YQ=="}`), j("ztpetcd.PutRequest", `{"key":"Yg=="}`)),
			path: "key"},
		{name: "duplicate enum", method: "/ztpetcd.KV/Txn",
			in:   lenField(3, lenField(1, j("ztpetcd.RangeRequest", `{"sortOrder":"ASCEND"}`), j("ztpetcd.RangeRequest", `{"sortOrder":"DESCEND"}`))),
			path: "failure[0].requestRange.sortOrder"},
		{name: "countOnly trick: duplicate message field", method: "/ztpetcd.KV/Txn",
			in:   lenField(2, lenField(1, countOnly), lenField(1, rangeAll)),
			path: "success[0].requestRange"},
		{name: "duplicate scalar nested in the second element of a list", method: "/ztpetcd.KV/Txn",
			in:   slices.Concat(lenField(2, lenField(1, rangeAll)), lenField(3, lenField(1, rangeAll)), lenField(2, lenField(1, countOnly, protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 0)))),
			path: "success[1].requestRange.countOnly"},
		{name: "two members of one oneof", method: "/ztpetcd.KV/Txn",
			in:   lenField(2, lenField(1, countOnly), lenField(3, j("ztpetcd.DeleteRangeRequest", `{"key":"YQ=="}`))),
			path: "success[0].requestDeleteRange", oneof: "request"},
		{name: "two members of a scalar oneof", method: "/ztpetcd.KV/Txn",
			in:   lenField(1, j("ztpetcd.Compare", `{"version":"1"}`), j("ztpetcd.Compare", `{"modRevision":"2"}`)),
			path: "compare[0].modRevision", oneof: "target_union"},
		{name: "duplicate inside an Any", method: "/ztptest.Admin/Do",
			in:   lenField(95, anyOf("ztptest.Legacy", legacyID, legacyID)),
			path: "any.id"},
		{name: "duplicate inside an Any inside an Any", method: "/ztptest.Admin/Do",
			in:   lenField(95, anyOf("google.protobuf.Any", anyOf("ztptest.Legacy", legacyID, j("ztptest.Legacy", `{"id":2}`)))),
			path: "any.id"},
		{name: "duplicate Any value", method: "/ztptest.Admin/Do",
			in:   lenField(95, anyOf("ztptest.Legacy", legacyID), lenField(2, legacyID)),
			path: "any.value"},
		{name: "duplicate inside a map entry's value", method: "/ztptest.Admin/Do",
			in:   lenField(73, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 9), lenField(2, nestedA, nestedA)),
			path: "mapUint64.*.a"},
		{name: "map entry value twice", method: "/ztptest.Admin/Do",
			in:   lenField(73, lenField(2, nestedA), lenField(2, nestedA)),
			path: "mapUint64.*"},
		{name: "map entry key twice", method: "/ztptest.Admin/Do",
			in:   panickingMapEntry,
			path: "mapInt32.*"},
		{name: "duplicate in a group", method: "/ztptest.Admin/Old",
			in:   slices.Concat(legacyID, group(x, x)),
			path: "grp.x"},
		{name: "group twice", method: "/ztptest.Admin/Old",
			in:   slices.Concat(legacyID, group(x), group()),
			path: "grp"},
		{name: "extension twice", method: "/ztptest.Admin/Old",
			in:   slices.Concat(legacyID, lenField(100, []byte("a")), lenField(100, []byte("b"))),
			path: "[ztptest.ext_name]"},
		{name: "duplicate in a recursive message, deep", method: "/ztptest.Admin/Old",
			in:   slices.Concat(legacyID, lenField(9, legacyID, lenField(9, legacyID, legacyID))),
			path: "child.child.id"},
		{name: "proto3 optional twice", method: "/ztptest.Admin/Do",
			in:   slices.Concat(j("ztptest.All", `{"oInt32":0}`), j("ztptest.All", `{"oInt32":1}`)),
			path: "oInt32"},
	}
}

// TestScanAmbiguous: every shape of a repeated non-repeated field is refused
// with its path, and decodes as protobuf-go reads it when allowed.
func TestScanAmbiguous(t *testing.T) {
	p := testProtoset(t)
	strict, lax := NewDecoder(p), NewDecoder(p, AllowDuplicateFields())
	ctx := testContext(t)
	for _, tc := range ambiguousCases(t, p) {
		t.Run(tc.name, func(t *testing.T) {
			req, _, _, err := strict.DecodeUnknown(ctx, tc.method, tc.in)
			var dup *DuplicateFieldError
			if !errors.As(err, &dup) || !errors.Is(err, ErrAmbiguous) || req != nil {
				t.Fatalf("DecodeUnknown = %v, %v; want a DuplicateFieldError", req, err)
			}
			if dup.Path != tc.path || dup.Oneof != tc.oneof {
				t.Errorf("path %q oneof %q, want %q %q (%v)", dup.Path, dup.Oneof, tc.path, tc.oneof, err)
			}
			if Reason(err) != ReasonAmbiguous {
				t.Errorf("Reason = %q", Reason(err))
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name %s", err, tc.path)
			}
			_, _, _, err = lax.DecodeUnknown(ctx, tc.method, tc.in)
			if errors.Is(err, ErrAmbiguous) {
				t.Errorf("with AllowDuplicateFields: %v", err)
			}
		})
	}
}

// TestScanAccepts: what looks like repetition but has one reading is
// decoded: repeated fields in several runs, packed and unpacked mixed, a map
// key in two entries, unknown fields twice, a oneof member after a
// different field.
func TestScanAccepts(t *testing.T) {
	p := testProtoset(t)
	d := NewDecoder(p)
	ctx := testContext(t)
	j := func(name protoreflect.FullName, text string) []byte { return wireJSON(t, p, name, text) }
	unpacked := protowire.AppendVarint(protowire.AppendTag(nil, 35, protowire.VarintType), 3) // r_int32
	entry := func(k uint64, a string) []byte {
		return lenField(73, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), k), lenField(2, j("ztptest.All.Nested", `{"a":`+a+`}`)))
	}
	for _, tc := range []struct {
		name, method string
		in           []byte
		want         map[string]string // key of the request → its JSON
	}{
		{"repeated message in two runs", "/ztpetcd.KV/Txn", slices.Concat(lenField(2), lenField(3), lenField(2)),
			map[string]string{"success": `[{},{}]`, "failure": `[{}]`}},
		{"packed and unpacked", "/ztptest.Admin/Do", slices.Concat(j("ztptest.All", `{"rInt32":[1,2]}`), unpacked, unpacked),
			map[string]string{"rInt32": `[1,2,3,3]`}},
		{"map key in two entries, last wins everywhere", "/ztptest.Admin/Do", slices.Concat(entry(1, "1"), entry(1, "2")),
			map[string]string{"mapUint64": `{"1":{"a":2,"b":""}}`}},
		{"unknown field twice", "/ztpetcd.KV/Put", slices.Concat(lenField(99, []byte("x")), lenField(99, []byte("y"))),
			map[string]string{"key": `""`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _, err := d.DecodeErr(ctx, tc.method, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.want {
				if got := mustJSON(t, req[k]); got != want {
					t.Errorf("%s = %s, want %s", k, got, want)
				}
			}
		})
	}
}

// TestScanLimits: the node and depth limits are exact, count every element
// of a packed list, every map entry and what an Any packs, and refuse before
// anything is unmarshalled.
func TestScanLimits(t *testing.T) {
	p := testProtoset(t)
	ctx := testContext(t)
	j := func(name protoreflect.FullName, text string) []byte { return wireJSON(t, p, name, text) }
	nest := func(depth int) []byte { // Legacy{id, child{id, child{...}}}: depth messages
		b := j("ztptest.Legacy", `{"id":1}`)
		for range depth - 1 {
			b = slices.Concat(j("ztptest.Legacy", `{"id":1}`), lenField(9, b))
		}
		return b
	}
	// Every message also counts the fields it renders at their defaults
	// (fields without presence): All has many, Legacy (proto2) only its lists.
	all, legacy := renderedDefaults(t, p, "ztptest.All"), renderedDefaults(t, p, "ztptest.Legacy")
	nested := renderedDefaults(t, p, "ztptest.All.Nested") // map_uint64's values
	for _, tc := range []struct {
		name, method      string
		in                []byte
		nodes, maxN, maxD int
	}{
		// 1 node for the list's tag, one more per further element.
		{"packed list", "/ztptest.Admin/Do", j("ztptest.All", `{"rInt32":[1,200,3,4000000]}`), all + 4, 0, 0},
		{"packed fixed", "/ztptest.Admin/Do", j("ztptest.All", `{"rFixed64":[1,2,3]}`), all + 3, 0, 0},
		// field + key + value per entry; an entry renders no defaults.
		{"map", "/ztptest.Admin/Do", j("ztptest.All", `{"mapInt32":{"1":"a","2":"b"}}`), all + 6, 0, 0},
		// An entry without its message value renders an empty message: its
		// defaults count as if the value were sent empty.
		{"map entry without its message value", "/ztptest.Admin/Do", lenField(73, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 7)), all + 2 + nested, 0, 0},
		{"map entry with an empty message value", "/ztptest.Admin/Do", lenField(73, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 7), lenField(2)), all + 3 + nested, 0, 0},
		// any + typeUrl + value + id; the Any renders what it packs, not its own fields.
		{"Any", "/ztptest.Admin/Do", lenField(95, anyOf("ztptest.Legacy", j("ztptest.Legacy", `{"id":1}`))), all + legacy + 4, 0, 0},
		{"depth", "/ztptest.Admin/Old", nest(5), 9 + 5*legacy, 0, 5},
		// An empty message on the wire is all its defaults in the input.
		{"empty message", "/ztptest.Admin/Do", nil, all, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(p, WithLimits(tc.nodes, max(tc.maxD, 100)))
			if _, _, err := d.DecodeErr(ctx, tc.method, tc.in); err != nil {
				t.Fatalf("at the limit: %v", err)
			}
			d = NewDecoder(p, WithLimits(tc.nodes-1, 100))
			_, _, err := d.DecodeErr(ctx, tc.method, tc.in)
			if !errors.Is(err, ErrTooComplex) || Reason(err) != ReasonTooComplex || !strings.Contains(err.Error(), "limits.max_decoded_nodes") {
				t.Fatalf("one node over: %v", err)
			}
			if tc.maxD > 0 {
				d = NewDecoder(p, WithLimits(1000, tc.maxD-1))
				_, _, err := d.DecodeErr(ctx, tc.method, tc.in)
				if !errors.Is(err, ErrTooComplex) || !strings.Contains(err.Error(), "limits.max_decode_depth") {
					t.Fatalf("one level too deep: %v", err)
				}
			}
		})
	}
}

// TestReason: every error a Decoder returns maps to one documented reason.
func TestReason(t *testing.T) {
	p := testProtoset(t)
	d := NewDecoder(p)
	ctx := testContext(t)
	for _, tc := range []struct {
		method string
		in     []byte
		want   string
	}{
		{"/ztpetcd.KV/Put", nil, ""},
		{"/ztpetcd.KV/Nope", nil, ReasonUnknownMethod},
		{"/nope.KV/Put", nil, ReasonUnknownMethod},
		{"/ztpetcd.KV/Put", []byte{0xff}, ReasonUnparsable},
		{"/ztptest.Admin/Do", lenField(95, anyOf("nope.Type")), ReasonUnrenderable},
		{"/ztptest.Admin/Do", lenField(95, anyOf("ztptest.Legacy", []byte{0xff})), ReasonUnrenderable},
		{"/ztpetcd.KV/Put", slices.Concat(lenField(1), lenField(1)), ReasonAmbiguous},
	} {
		_, _, err := d.DecodeErr(ctx, tc.method, tc.in)
		if got := Reason(err); got != tc.want {
			t.Errorf("%s %x: Reason(%v) = %q, want %q", tc.method, tc.in, err, got, tc.want)
		}
	}
	if got := Reason(ErrNoReflection); got != ReasonNoDescriptors {
		t.Errorf("Reason(ErrNoReflection) = %q", got)
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDefaultLimitsAdmitRealRequests: the largest Txn etcd itself accepts
// at its default --max-txn-ops (128 compares, 128 ops in each branch, every
// field set) decodes under the default limits, with room to spare; the test
// logs how many nodes it has.
func TestDefaultLimitsAdmitRealRequests(t *testing.T) {
	p := testProtoset(t)
	ctx := testContext(t)
	var compares, ops []string
	for i := range 128 {
		compares = append(compares, fmt.Sprintf(`{"result":"GREATER","key":"L2svJWQ=","modRevision":"%d"}`, i+1))
		ops = append(ops, `{"requestPut":{"key":"L2svYQ==","value":"dmFsdWU=","lease":"7587869813298837514","prevKv":true,"ignoreValue":true,"ignoreLease":true}}`)
	}
	txn := wireJSON(t, p, "ztpetcd.TxnRequest", `{"compare":[`+strings.Join(compares, ",")+`],"success":[`+strings.Join(ops, ",")+`],"failure":[`+strings.Join(ops, ",")+`]}`)
	if _, _, err := NewDecoder(p).DecodeErr(ctx, "/ztpetcd.KV/Txn", txn); err != nil {
		t.Fatalf("etcd's largest Txn: %v", err)
	}
	// The smallest node limit that admits it.
	nodes := sort.Search(DefaultMaxNodes, func(n int) bool {
		_, _, err := NewDecoder(p, WithLimits(n+1, 0)).DecodeErr(ctx, "/ztpetcd.KV/Txn", txn)
		return err == nil
	}) + 1
	t.Logf("etcd's largest Txn at --max-txn-ops 128: %d nodes (limit %d)", nodes, DefaultMaxNodes)
	if nodes*2 > DefaultMaxNodes {
		t.Errorf("etcd's largest Txn has %d nodes: the default limit %d leaves less than 2x room", nodes, DefaultMaxNodes)
	}
}

// renderedDefaults counts the fields of the named message that are rendered
// however empty it is: those without presence.
func renderedDefaults(t *testing.T, p *Protoset, name protoreflect.FullName) int {
	t.Helper()
	d, err := p.files.FindDescriptorByName(name)
	if err != nil {
		t.Fatal(err)
	}
	fields := d.(protoreflect.MessageDescriptor).Fields()
	n := 0
	for i := range fields.Len() {
		if !fields.Get(i).HasPresence() {
			n++
		}
	}
	return n
}

// TestLastWinsOracle: FuzzDecode's last-one-wins parse is a real oracle: on
// the countOnly trick it reads what etcd reads (a full range), where
// protobuf-go's merge reads a count-only one.
func TestLastWinsOracle(t *testing.T) {
	p := testProtoset(t)
	types := withGlobalMessages{p.types()}
	for _, tc := range ambiguousCases(t, p) {
		if !strings.HasPrefix(tc.name, "countOnly trick") {
			continue
		}
		md, err := p.FindMethod(testContext(t), tc.method)
		if err != nil {
			t.Fatal(err)
		}
		merged := dynamicpb.NewMessage(md.Input())
		if err := (proto.UnmarshalOptions{Resolver: types}).Unmarshal(tc.in, merged); err != nil {
			t.Fatal(err)
		}
		last, err := lastWins(md.Input(), tc.in, types)
		if err != nil {
			t.Fatal(err)
		}
		countOnly := func(m protoreflect.Message) bool {
			op := m.Get(md.Input().Fields().ByName("success")).List().Get(0).Message()
			rr := op.Get(op.Descriptor().Fields().ByName("request_range")).Message()
			return rr.Get(rr.Descriptor().Fields().ByName("count_only")).Bool()
		}
		if !countOnly(merged) || countOnly(last) || proto.Equal(merged.Interface(), last.Interface()) {
			t.Errorf("merged count_only %v, last-one-wins count_only %v: want true, false", countOnly(merged), countOnly(last))
		}
	}
}
