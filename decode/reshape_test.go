package decode

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

// TestReshapeOldRecords: a request as earlier versions recorded it
// (protojson's default shape: zero values absent, the caller's type URLs)
// reshaped from the descriptors is what Decode renders today, and a request
// rendered today is left alone.
func TestReshapeOldRecords(t *testing.T) {
	p := testProtoset(t)
	d := NewDecoder(p)
	ctx := context.Background()
	types := withGlobalMessages{p.types()}
	methods := []string{"/ztptest.Admin/Do", "/ztptest.Admin/Old", "/ztpetcd.KV/Txn", "/apipb.GobgpApi/AddPath", "/grpc.testing.TestService/UnaryCall"}
	rng := newSeededPopulator()
	rng.invalid = 0
	var reshaped int
	for i := range 400 {
		method := methods[i%len(methods)]
		md, err := p.FindMethod(ctx, method)
		if err != nil {
			t.Fatal(err)
		}
		m := dynamicpb.NewMessage(md.Input())
		rng.message(m, 0)
		b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		want, _, err := d.DecodeErr(ctx, method, b)
		if err != nil {
			continue // refused today: there is no shape to reach
		}
		ref := dynamicpb.NewMessage(md.Input())
		if err := (proto.UnmarshalOptions{Resolver: types}).Unmarshal(b, ref); err != nil {
			t.Fatal(err)
		}
		oldJSON, err := protojson.MarshalOptions{Resolver: types}.Marshal(ref)
		if err != nil {
			t.Fatalf("case %d: the old shape: %v", i, err)
		}
		old, err := normalise(oldJSON)
		if err != nil {
			t.Fatal(err)
		}
		n, err := p.Reshape(method, old.(map[string]any))
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			reshaped++
		}
		g, _ := json.Marshal(old)
		w, _ := json.Marshal(want)
		gn, _ := normalise(g)
		wn, _ := normalise(w)
		if !reflect.DeepEqual(gn, wn) {
			t.Fatalf("case %d (%s): reshaped\n  %s\nfrom\n  %s\nwant\n  %s", i, method, g, oldJSON, w)
		}
		if n, _ := p.Reshape(method, want); n != 0 {
			t.Fatalf("case %d: Reshape changed %d values of a request rendered today", i, n)
		}
	}
	if reshaped < 100 {
		t.Errorf("only %d requests needed reshaping; the test proves little", reshaped)
	}
}

// TestReshapeLeavesWhatItCannotRead: redacted values and values of the wrong
// shape stay as they are, an unknown method is an error.
func TestReshapeLeavesWhatItCannotRead(t *testing.T) {
	p := testProtoset(t)
	req := map[string]any{"success": []any{"[redacted]", map[string]any{"requestPut": "[redacted]"}}, "compare": "[redacted]"}
	n, err := p.Reshape("/ztpetcd.KV/Txn", req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(req)
	if want := `{"compare":"[redacted]","failure":[],"success":["[redacted]",{"requestPut":"[redacted]"}]}`; n != 1 || string(got) != want {
		t.Errorf("Reshape = %d, %s; want 1, %s", n, got, want)
	}
	if _, err := p.Reshape("/ztpetcd.KV/Nope", map[string]any{}); err == nil {
		t.Error("Reshape of an unknown method: no error")
	}
}
