package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/decode"
	"github.com/ztp-dev/ztp/pki"
)

// fixture writes a valid config with real certificates, policies and a protoset
// placeholder into a temp dir and returns the dir.
func fixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("test ca")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(pki.LeafOptions{CommonName: "proxy", DNSNames: []string{"localhost"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.MkdirAll(filepath.Join(dir, "certs"), 0o755))
	must(t, pki.WriteFiles(filepath.Join(dir, "certs"), "proxy", leaf))
	must(t, os.WriteFile(filepath.Join(dir, "certs", "ca.pem"), ca.CertPEM, 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "policies"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "policies", "p.rego"), []byte("package ztp\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "etcd.protoset"), nil, 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "data"), 0o755))
	return dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

const valid = `listen: 127.0.0.1:7443
tls:
  cert: certs/proxy.pem
  key: certs/proxy-key.pem
  client_ca: certs/ca.pem
identity:
  principals:
    - match: "spiffe://example.org/ns/prod/sa/*"
      kind: automation
      groups: [deployers]
    - match: "spiffe://example.org/user/*"
      kind: human
      groups: [sre]
upstreams:
  - name: etcd
    address: 127.0.0.1:2379
    services: ["etcdserverpb.*"]
    descriptors: etcd.protoset
    tls: { insecure: true }
policy:
  paths: [policies/]
audit:
  path: data/audit.db
  redact: ["password"]
limits:
  max_unary_deadline: 30s
`

func TestParseValid(t *testing.T) {
	dir := fixture(t)
	c, err := Parse(filepath.Join(dir, "ztp.yaml"), []byte(valid))
	if err != nil {
		t.Fatalf("Parse(valid) = %v", err)
	}
	if got, want := c.Resolve(c.Upstreams[0].Descriptors), filepath.Join(dir, "etcd.protoset"); got != want {
		t.Errorf("Resolve(descriptors) = %q, want %q", got, want)
	}
	if c.Policy.Mode != "enforce" || c.TLS.ClientAuth != "require" {
		t.Errorf("defaults: mode %q client_auth %q, want enforce, require", c.Policy.Mode, c.TLS.ClientAuth)
	}
	if c.Limits.MaxMessageBytes != DefaultMaxMessageBytes || c.Limits.MaxConcurrentStreams != DefaultMaxConcurrentStreams {
		t.Errorf("limit defaults = %+v", c.Limits)
	}
	if c.Limits.MaxDecodedNodes != decode.DefaultMaxNodes || c.Limits.MaxDecodeDepth != decode.DefaultMaxDepth || c.Upstreams[0].AllowDuplicateFields {
		t.Errorf("decode defaults: nodes %d depth %d allow_duplicate_fields %v", c.Limits.MaxDecodedNodes, c.Limits.MaxDecodeDepth, c.Upstreams[0].AllowDuplicateFields)
	}
	if c.Limits.MaxUnaryDeadline != 30*time.Second {
		t.Errorf("max_unary_deadline = %v, want 30s", c.Limits.MaxUnaryDeadline)
	}
	if c.Identity.Principals[1].Groups[0] != "sre" {
		t.Errorf("principals[1] = %+v", c.Identity.Principals[1])
	}
}

func TestParseErrors(t *testing.T) {
	dir := fixture(t)
	tests := []struct {
		name string
		edit func(string) string
		want []string // substrings of the error
	}{
		{"unknown top-level key", add("colour: blue\n"), []string{"ztp.yaml:27: colour: unknown key"}},
		{"unknown nested key with hint", repl("client_ca:", "clientCA:"), []string{"ztp.yaml:5: tls.clientCA: unknown key", `did you mean "client_ca"`}},
		{"missing port", repl("127.0.0.1:2379", "127.0.0.1"), []string{"ztp.yaml:16: upstreams[0].address: missing port"}},
		{"bad listen port", repl("127.0.0.1:7443", "127.0.0.1:http9"), []string{"listen: bad port"}},
		{"bad glob", repl(`"etcdserverpb.*"`, `"etcd[.*"`), []string{"upstreams[0].services[0]: bad glob"}},
		{"bad principal glob", repl(`"spiffe://example.org/user/*"`, `"spiffe://[x"`), []string{"ztp.yaml:11: identity.principals[1].match: bad glob"}},
		{"bad kind", repl("kind: human", "kind: robot"), []string{"identity.principals[1].kind: must be automation or human"}},
		{"person {*} without one star", repl(`"spiffe://example.org/user/*"`, `"spiffe://example.org/user/alice"`+"\n      person: \"{*}\""), []string{"ztp.yaml:12: identity.principals[1].person: {*} needs a match with exactly one '*'"}},
		{"missing cert file", repl("certs/proxy.pem", "certs/nope.pem"), []string{"tls.cert: certs/nope.pem: no such file"}},
		{"missing protoset", repl("etcd.protoset", "gone.protoset"), []string{"upstreams[0].descriptors: gone.protoset: no such file"}},
		{"bad mode", add("  mode: yolo\n", "  paths: [policies/]\n"), []string{"policy.mode: must be enforce or dryrun"}},
		{"wrong type", repl("max_unary_deadline: 30s", "max_unary_deadline: soon"), []string{"ztp.yaml:26:", "limits.max_unary_deadline"}},
		{"negative decode nodes", add("  max_decoded_nodes: -1\n"), []string{"ztp.yaml:27: limits.max_decoded_nodes: must be at least 1"}},
		{"decode depth above protobuf's", add("  max_decode_depth: 10001\n"), []string{"ztp.yaml:27: limits.max_decode_depth: must be between 1 and 10000"}},
		{"allow_duplicate_fields not a bool", repl("    tls: { insecure: true }\n", "    tls: { insecure: true }\n    allow_duplicate_fields: sometimes\n"), []string{"ztp.yaml:20:", "upstreams[0].allow_duplicate_fields"}},
		{"duplicate upstream", add("  - name: etcd\n    address: a:1\n    services: [x]\n", "    tls: { insecure: true }\n"), []string{"upstreams[1].name: duplicate upstream name"}},
		{"no audit path", repl("  path: data/audit.db\n", ""), []string{"audit.path: required"}},
		{"audit dir missing", repl("data/audit.db", "nodir/audit.db"), []string{"audit.path: directory"}},
		{"checkpoint dir without signing key", add("  checkpoint_dir: data\n", "  redact: [\"password\"]\n"), []string{"audit.checkpoint_dir: needs audit.signing_key"}},
		{"checkpoint command without signing key", add("  checkpoint_command: [logger]\n", "  redact: [\"password\"]\n"), []string{"audit.checkpoint_command: needs audit.signing_key"}},
		{"checkpoint dir missing", add("  signing_key: certs/proxy-key.pem\n  checkpoint_dir: nope\n", "  redact: [\"password\"]\n"), []string{"audit.checkpoint_dir:", "nope is not a directory"}},
		{"checkpoint command empty program", add("  signing_key: certs/proxy-key.pem\n  checkpoint_command: [\"\", x]\n", "  redact: [\"password\"]\n"), []string{"audit.checkpoint_command: the first element"}},
		{"checkpoint command timeout too short", add("  checkpoint_command_timeout: 10ms\n", "  redact: [\"password\"]\n"), []string{"audit.checkpoint_command_timeout: must be at least 1s"}},
		{"insecure with ca", repl("{ insecure: true }", "{ insecure: true, ca: certs/ca.pem }"), []string{"upstreams[0].tls.insecure: insecure cannot be combined"}},
		{"several errors at once", func(s string) string { return repl("kind: human", "kind: x")(repl("127.0.0.1:2379", "nohost")(s)) }, []string{"principals[1].kind", "upstreams[0].address"}},
		{"not yaml", func(string) string { return "listen: [\n" }, []string{"not valid YAML"}},
		{"tracing without endpoint", add("tracing:\n  insecure: true\n"), []string{"ztp.yaml:27: tracing.otlp_endpoint: required"}},
		{"empty tracing section", add("tracing:\n"), []string{"tracing.otlp_endpoint: required"}},
		{"tracing endpoint without port", add("tracing:\n  otlp_endpoint: collector\n"), []string{"ztp.yaml:28: tracing.otlp_endpoint: missing port"}},
		{"tracing endpoint without host", add("tracing:\n  otlp_endpoint: :4317\n"), []string{"tracing.otlp_endpoint: host is required"}},
		{"sample ratio above 1", add("tracing:\n  otlp_endpoint: c:4317\n  sample_ratio: 1.5\n"), []string{"ztp.yaml:29: tracing.sample_ratio: must be between 0 and 1"}},
		{"negative sample ratio", add("tracing:\n  otlp_endpoint: c:4317\n  sample_ratio: -0.1\n"), []string{"tracing.sample_ratio: must be between 0 and 1"}},
		{"NaN sample ratio", add("tracing:\n  otlp_endpoint: c:4317\n  sample_ratio: .nan\n"), []string{"tracing.sample_ratio: must be between 0 and 1"}},
		{"sample ratio not a number", add("tracing:\n  otlp_endpoint: c:4317\n  sample_ratio: most\n"), []string{"ztp.yaml:29:", "tracing.sample_ratio"}},
		{"blank service name", add("tracing:\n  otlp_endpoint: c:4317\n  service_name: \"  \"\n"), []string{"tracing.service_name: must not be blank"}},
		{"tracing insecure with ca", add("tracing:\n  otlp_endpoint: c:4317\n  insecure: true\n  ca: certs/ca.pem\n"), []string{"tracing.insecure: insecure cannot be combined with ca"}},
		{"tracing ca missing", add("tracing:\n  otlp_endpoint: c:4317\n  ca: certs/nope.pem\n"), []string{"tracing.ca: certs/nope.pem: no such file"}},
		{"tracing ca not PEM", add("tracing:\n  otlp_endpoint: c:4317\n  ca: etcd.protoset\n"), []string{"tracing.ca: etcd.protoset holds no PEM certificate"}},
		{"unknown tracing key", add("tracing:\n  otlp_endpoint: c:4317\n  endpoint: c:4317\n"), []string{"tracing.endpoint: unknown key"}},
		{"bad rate limit unit", add("rate_limits:\n  - match: { kind: human }\n    unit: bytes\n    rps: 1\n    burst: 1\n"), []string{"ztp.yaml:29: rate_limits[0].unit: must be messages, response_messages or response_bytes, got \"bytes\""}},
		{"audit header with credentials", add("  headers: [user-agent, proxy-authorization]\n", "  redact: [\"password\"]\n"), []string{"ztp.yaml:25: audit.headers[1]: \"proxy-authorization\" carries credentials"}},
		{"audit header binary", add("  headers: [trace-bin]\n", "  redact: [\"password\"]\n"), []string{"audit.headers[0]: \"trace-bin\" carries credentials or binary data"}},
		{"audit header upper case", add("  headers: [User-Agent]\n", "  redact: [\"password\"]\n"), []string{"audit.headers[0]: \"User-Agent\" is not a lower-case header name"}},
		{"audit header reserved", add("  headers: [x-ztp-grant]\n", "  redact: [\"password\"]\n"), []string{"audit.headers[0]: \"x-ztp-grant\" is reserved"}},
		{"audit header duplicate", add("  headers: [user-agent, user-agent]\n", "  redact: [\"password\"]\n"), []string{"audit.headers[1]: duplicate header"}},
		{"audit max_request_bytes too small", add("  max_request_bytes: 100\n", "  redact: [\"password\"]\n"), []string{"audit.max_request_bytes: must be between 1024"}},
		{"audit min_free_bytes negative", add("  min_free_bytes: -1\n", "  redact: [\"password\"]\n"), []string{"audit.min_free_bytes: must not be negative"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.edit(valid)
			_, err := Parse(filepath.Join(dir, "ztp.yaml"), []byte(src))
			if err == nil {
				t.Fatalf("Parse() = nil error, want one containing %q\n%s", tc.want, src)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse() error = %q\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func repl(old, new string) func(string) string {
	return func(s string) string {
		if !strings.Contains(s, old) {
			panic("fixture does not contain " + old)
		}
		return strings.Replace(s, old, new, 1)
	}
}

// add appends text at the end, or after the line `after` when given.
func add(text string, after ...string) func(string) string {
	return func(s string) string {
		if len(after) == 0 {
			return s + text
		}
		return strings.Replace(s, after[0], after[0]+text, 1)
	}
}

func TestTracing(t *testing.T) {
	dir := fixture(t)
	tests := []struct {
		name string
		yaml string // appended to the valid config
		want Tracing
	}{
		{"absent: off", "", Tracing{}},
		{"defaults", "tracing:\n  otlp_endpoint: 127.0.0.1:4317\n",
			Tracing{Enabled: true, OTLPEndpoint: "127.0.0.1:4317", SampleRatio: 1, ServiceName: "ztp-proxy"}},
		{"explicit zero ratio kept", "tracing:\n  otlp_endpoint: collector:4317\n  insecure: true\n  sample_ratio: 0\n  service_name: edge-proxy\n",
			Tracing{Enabled: true, OTLPEndpoint: "collector:4317", Insecure: true, SampleRatio: 0, ServiceName: "edge-proxy"}},
		{"ratio and ca", "tracing:\n  otlp_endpoint: collector:4317\n  ca: certs/ca.pem\n  sample_ratio: 0.1\n",
			Tracing{Enabled: true, OTLPEndpoint: "collector:4317", CA: "certs/ca.pem", SampleRatio: 0.1, ServiceName: "ztp-proxy"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(filepath.Join(dir, "ztp.yaml"), []byte(valid+tc.yaml))
			if err != nil {
				t.Fatalf("Parse() = %v", err)
			}
			if c.Tracing != tc.want {
				t.Errorf("Tracing = %+v, want %+v", c.Tracing, tc.want)
			}
		})
	}
}

// TestAuditDefaults: absent keys get safe defaults; an explicit empty header
// list and a zero watermark are kept.
func TestAuditDefaults(t *testing.T) {
	dir := fixture(t)
	c, err := Parse(filepath.Join(dir, "ztp.yaml"), []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Audit
	if a.MaxRequestBytes != 64<<10 || a.MinFreeBytes != 1<<30 || !reflect.DeepEqual(a.Headers, DefaultAuditHeaders) {
		t.Errorf("audit defaults = %+v", a)
	}
	for _, h := range []string{"x-ztp-justification", "x-ztp-ticket", "user-agent", "client-api-version"} {
		if !slices.Contains(a.Headers, h) {
			t.Errorf("default audit.headers lacks %s", h)
		}
	}
	c, err = Parse(filepath.Join(dir, "ztp.yaml"), []byte(add("  headers: []\n  min_free_bytes: 0\n  max_request_bytes: 2048\n", "  redact: [\"password\"]\n")(valid)))
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Audit; a.Headers == nil || len(a.Headers) != 0 || a.MinFreeBytes != 0 || a.MaxRequestBytes != 2048 {
		t.Errorf("explicit audit settings = %+v, want no headers, no watermark, 2048", a)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("Load(missing) = %v, want error naming the file", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte("listen: [\n"))
	f.Add([]byte("upstreams: {a: 1}\n"))
	f.Add([]byte(valid + "tracing:\n  otlp_endpoint: c:4317\n  sample_ratio: .nan\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Parse("/nonexistent/ztp.yaml", data) // must not panic
	})
}

// TestSecureDefaults: configurations that would quietly weaken the proxy are refused.
func TestSecureDefaults(t *testing.T) {
	dir := fixture(t)
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{"verify_if_given without jwt", add("  client_auth: verify_if_given\n", "  client_ca: certs/ca.pem\n"), "tls.client_auth: verify_if_given without identity.jwt"},
		{"breakglass without approvals_required", add("breakglass:\n  approver_groups: [sre-leads]\n"), "breakglass.approvals_required: required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "ztp.yaml"), []byte(tc.edit(valid)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse() = %v, want error containing %q", err, tc.want)
			}
		})
	}
	ok := add("breakglass:\n  approvals_required: 0\n")(valid)
	c, err := Parse(filepath.Join(dir, "ztp.yaml"), []byte(ok))
	if err != nil || !c.Breakglass.Enabled {
		t.Errorf("explicit self-service breakglass: %v, enabled=%v; want accepted and enabled", err, c != nil && c.Breakglass.Enabled)
	}
}

// TestStreamBoundsAndPendingBound: the stream bounds cannot be switched off,
// and their defaults (and the pending bound's) apply when the keys are absent.
func TestStreamBoundsAndPendingBound(t *testing.T) {
	dir := fixture(t)
	c, err := Parse(filepath.Join(dir, "ztp.yaml"), []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.FirstMessageTimeout != DefaultFirstMessageTimeout || c.Limits.MaxStreamsPerPrincipal != DefaultMaxStreamsPerPrincipal || c.Breakglass.MaxPendingPerPerson != 0 {
		t.Errorf("defaults: first_message_timeout %v, max_streams_per_principal %d, max_pending_per_person %d; want %v, %d and 0 (the store's default)",
			c.Limits.FirstMessageTimeout, c.Limits.MaxStreamsPerPrincipal, c.Breakglass.MaxPendingPerPerson, DefaultFirstMessageTimeout, DefaultMaxStreamsPerPrincipal)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"  first_message_timeout: 500ms\n", "limits.first_message_timeout: must be between 1s and 5m"},
		{"  first_message_timeout: 1h\n", "limits.first_message_timeout: must be between 1s and 5m"},
		{"  first_message_timeout: -1s\n", "limits.first_message_timeout: must be between 1s and 5m"},
		{"  max_streams_per_principal: -1\n", "limits.max_streams_per_principal: must be at least 1"},
	} {
		_, err := Parse(filepath.Join(dir, "ztp.yaml"), []byte(add(tc.yaml, "limits:\n")(valid)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("limits %q: Parse() = %v, want error containing %q", tc.yaml, err, tc.want)
		}
	}
	for _, v := range []string{"0", "101"} {
		_, err := Parse(filepath.Join(dir, "ztp.yaml"), []byte(add("breakglass:\n  approvals_required: 0\n  max_pending_per_person: "+v+"\n")(valid)))
		if err == nil || !strings.Contains(err.Error(), "breakglass.max_pending_per_person: must be between 1 and 100") {
			t.Errorf("max_pending_per_person %s: Parse() = %v, want it refused naming the key", v, err)
		}
	}
}
