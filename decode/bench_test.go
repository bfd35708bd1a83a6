package decode

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// benchCases are etcd-shaped requests: a Put with byte key/value, an int64
// lease and bools, and a Txn guarding a put with a compare.
var benchCases = []struct {
	name, method, msg, json string
}{
	{"Put", "/ztpetcd.KV/Put", "ztpetcd.PutRequest",
		`{"key":"L3JlZ2lzdHJ5L3BvZHMvZGVmYXVsdC9uZ2lueC03Zjk4","value":"eyJhcGlWZXJzaW9uIjoidjEiLCJraW5kIjoiUG9kIiwibWV0YWRhdGEiOnsibmFtZSI6Im5naW54In19","lease":"7587869813298837514","prevKv":true,"ignoreLease":false}`},
	{"Txn", "/ztpetcd.KV/Txn", "ztpetcd.TxnRequest",
		`{"compare":[{"result":"EQUAL","key":"L2xvY2svbGVhZGVy","version":"0"}],"success":[{"requestPut":{"key":"L2xvY2svbGVhZGVy","value":"bm9kZS0x","lease":"7587869813298837515"}}],"failure":[{"requestRange":{"key":"L2xvY2svbGVhZGVy","limit":"1","sortOrder":"DESCEND"}}]}`},
}

func benchInput(b *testing.B, p *Protoset, msg, text string) []byte {
	b.Helper()
	return wireJSON(b, p, protoreflect.FullName(msg), text)
}

// BenchmarkDecode is the path the proxy runs per message: dynamicpb
// unmarshal, then a direct walk into map[string]any; "unknown" adds the
// check for fields the descriptors do not know, as the proxy runs it.
func BenchmarkDecode(b *testing.B) {
	p := testProtoset(b)
	d := NewDecoder(p)
	ctx := context.Background()
	for _, bc := range benchCases {
		in := benchInput(b, p, bc.msg, bc.json)
		for _, unknown := range []bool{false, true} {
			name := bc.name
			if unknown {
				name += "/unknown"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					ok := false
					if unknown {
						_, _, _, err := d.DecodeUnknown(ctx, bc.method, in)
						ok = err == nil
					} else {
						_, _, ok = d.Decode(ctx, bc.method, in)
					}
					if !ok {
						b.Fatal("decode failed")
					}
				}
			})
		}
	}
}

// BenchmarkDecodeProtojson is the obvious alternative the direct walk
// replaces: dynamicpb unmarshal, protojson.Marshal, then encoding/json back
// into Go values with UseNumber.
func BenchmarkDecodeProtojson(b *testing.B) {
	p := testProtoset(b)
	ctx := context.Background()
	for _, bc := range benchCases {
		in := benchInput(b, p, bc.msg, bc.json)
		b.Run(bc.name, func(b *testing.B) {
			md, err := p.FindMethod(ctx, bc.method)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				m := dynamicpb.NewMessage(md.Input())
				if err := proto.Unmarshal(in, m); err != nil {
					b.Fatal(err)
				}
				js, err := protojson.Marshal(m)
				if err != nil {
					b.Fatal(err)
				}
				dec := json.NewDecoder(bytes.NewReader(js))
				dec.UseNumber()
				var v map[string]any
				if err := dec.Decode(&v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkScan is the wire pre-scan alone, the part of BenchmarkDecode that
// bounds and checks a message before it is unmarshalled.
func BenchmarkScan(b *testing.B) {
	p := testProtoset(b)
	ctx := context.Background()
	d := NewDecoder(p)
	for _, bc := range benchCases {
		in := benchInput(b, p, bc.msg, bc.json)
		m, err := d.method(ctx, bc.method)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s := scanner{types: m.types, plans: m.plans, maxNodes: DefaultMaxNodes, maxDepth: DefaultMaxDepth}
				if err := s.scan(m.md.Input(), in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
