package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestValidateEffectQueries: validate refuses an effect query method the descriptors do
// not define as unary, naming the upstream and the key, as start-up does.
func TestValidateEffectQueries(t *testing.T) {
	for _, tc := range []struct{ methods, want string }{
		{"[/grpc.testing.TestService/UnaryCall]", ""},
		{"[/grpc.testing.TestService/UnaryCall, /grpc.testing.TestService/Nope]", "upstreams[0] (test): effect_queries.methods[1]:"},
		{"[/grpc.testing.TestService/StreamingOutputCall]", "effect_queries.methods[0]: /grpc.testing.TestService/StreamingOutputCall is a streaming method"},
	} {
		e := proxytest.Prepare(t, proxytest.Options{})
		e.RewriteConfig(t, func(s string) string {
			return strings.Replace(s, "    tls: { insecure: true }\n", "    tls: { insecure: true }\n    effect_queries: { methods: "+tc.methods+" }\n", 1)
		})
		cmd := newRootCommand()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs([]string{"validate", "--config", e.Config})
		err := cmd.Execute()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("validate with effect_queries.methods %s = %v, want %q", tc.methods, err, tc.want)
		}
	}
}
