package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/decode"
)

// Config is the parsed ztp.yaml. Field names mirror the YAML keys.
type Config struct {
	Listen     string          `yaml:"listen"`
	TLS        ServerTLS       `yaml:"tls"`
	Identity   Identity        `yaml:"identity"`
	Upstreams  []Upstream      `yaml:"upstreams"`
	Policy     Policy          `yaml:"policy"`
	RateLimits []RateLimitRule `yaml:"rate_limits"`
	Budgets    []Budget        `yaml:"budgets"`
	Audit      Audit           `yaml:"audit"`
	Breakglass Breakglass      `yaml:"breakglass"`
	Metrics    Metrics         `yaml:"metrics"`
	Log        Log             `yaml:"log"`
	Limits     Limits          `yaml:"limits"`
	Tracing    Tracing         `yaml:"tracing"`

	// File is the absolute path the config was read from ("" when parsed from bytes).
	File string `yaml:"-"`
}

// ServerTLS is the proxy's own certificate and the CA its clients' certificates must chain to.
type ServerTLS struct {
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	ClientCA   string `yaml:"client_ca"`
	ClientAuth string `yaml:"client_auth"` // require | verify_if_given
}

// Identity configures how authenticated ids become principals.
type Identity struct {
	JWT        *JWT            `yaml:"jwt"`
	Principals []PrincipalRule `yaml:"principals"`
}

// JWT configures bearer-token authentication (humans via an OIDC provider).
type JWT struct {
	Issuer         string        `yaml:"issuer"`
	Audience       string        `yaml:"audience"`
	JWKSFile       string        `yaml:"jwks_file"`
	PrincipalClaim string        `yaml:"principal_claim"` // default "sub"
	Leeway         time.Duration `yaml:"leeway"`          // clock skew allowed on exp/nbf/iat; default 30s
}

// RateLimitRule gives the callers it matches a token bucket; the first matching rule wins.
type RateLimitRule struct {
	Match RateLimitMatch `yaml:"match"`
	RPS   float64        `yaml:"rps"`
	Burst int            `yaml:"burst"`
	// BreakglassBypass lets calls admitted by a break-glass grant skip this rule.
	BreakglassBypass bool `yaml:"breakglass_bypass"`
	// Unit is what the bucket counts (default UnitMessages): client messages,
	// or the response volume a principal receives (UnitResponseMessages,
	// UnitResponseBytes). Rules of the two kinds are matched separately.
	Unit string `yaml:"unit"`
}

// Units of a rate_limits rule.
const (
	UnitMessages         = "messages"          // one token per client message (the default)
	UnitResponseMessages = "response_messages" // one token per message sent to the client
	UnitResponseBytes    = "response_bytes"    // one token per byte of each message sent to the client
)

// ResponseUnit reports whether the rule bounds response volume rather than
// the rate of client messages.
func (r RateLimitRule) ResponseUnit() bool {
	return r.Unit == UnitResponseMessages || r.Unit == UnitResponseBytes
}

// RateLimitMatch selects callers; empty fields match anything. Principal and method are globs.
type RateLimitMatch struct {
	Principal string `yaml:"principal"`
	Kind      string `yaml:"kind"`
	Group     string `yaml:"group"`
	Method    string `yaml:"method"`
}

// Budget bounds the change budgets that policies draw on (data.ztp.budgets): every key
// starting with Prefix may spend at most Limit cost units Per period.
type Budget struct {
	Prefix string        `yaml:"prefix"`
	Limit  float64       `yaml:"limit"`
	Per    time.Duration `yaml:"per"`
}

// Breakglass configures emergency grants.
type Breakglass struct {
	// Enabled is true when the file has a breakglass section: without one,
	// nobody can obtain a grant.
	Enabled           bool          `yaml:"-"`
	MaxDuration       time.Duration `yaml:"max_duration"`       // default 1h
	ApprovalsRequired int           `yaml:"approvals_required"` // 0 = self-service
	ApproverGroups    []string      `yaml:"approver_groups"`
	NotifyWebhook     string        `yaml:"notify_webhook"`
	// MaxPendingPerPerson bounds the requests one person may have waiting for
	// approval (0: breakglass.DefaultMaxPending): each is an audit record and
	// a notification to the approvers.
	MaxPendingPerPerson int `yaml:"max_pending_per_person"`
}

// Metrics configures the operational HTTP endpoint.
type Metrics struct {
	Listen string `yaml:"listen"`
	// Pprof serves Go's profiler under /debug/pprof/ on the same listener. Off by
	// default: a profile shows call paths and costs, not data, but it does cost CPU.
	Pprof bool `yaml:"pprof"`
}

// Tracing exports OpenTelemetry spans of every call (and of its upstream call) over
// OTLP/gRPC. Without the section nothing is traced and no tracing code runs per call.
type Tracing struct {
	// Enabled is true when the file has a tracing section.
	Enabled      bool   `yaml:"-"`
	OTLPEndpoint string `yaml:"otlp_endpoint"` // collector host:port (OTLP/gRPC)
	Insecure     bool   `yaml:"insecure"`      // plaintext to the collector
	CA           string `yaml:"ca"`            // PEM roots for the collector's certificate; default system roots
	// SampleRatio is the share of new traces recorded (default 1); a caller's
	// sampled flag is always followed.
	SampleRatio float64 `yaml:"sample_ratio"`
	ServiceName string  `yaml:"service_name"` // default "ztp-proxy"
}

// PrincipalRule classifies principal ids matching a glob; the first matching rule wins.
type PrincipalRule struct {
	Match  string   `yaml:"match"`
	Kind   string   `yaml:"kind"`
	Groups []string `yaml:"groups"`
	// Person names who is behind the matching ids, for break-glass separation
	// of duties: a literal, or a template where "{*}" is what Match's only '*'
	// matched. Empty: each id is its own person.
	Person string `yaml:"person"`
}

// Upstream is one backend and the services routed to it.
type Upstream struct {
	Name        string      `yaml:"name"`
	Address     string      `yaml:"address"`
	Services    []string    `yaml:"services"`
	Descriptors string      `yaml:"descriptors"`
	Reflection  bool        `yaml:"reflection"`
	TLS         UpstreamTLS `yaml:"tls"`
	// AllowDuplicateFields admits messages in which a non-repeated field
	// occurs more than once. They are decided as protobuf-go reads them,
	// which may not be how the upstream reads them (etcd keeps the last
	// occurrence of a message field where protobuf-go merges them).
	AllowDuplicateFields bool `yaml:"allow_duplicate_fields"`
	// EffectQueries lets policies ask this upstream read-only questions (ztp.query);
	// nil: they may not.
	EffectQueries *EffectQueries `yaml:"effect_queries"`
}

// EffectQueries are the read-only requests policies may send to an upstream with the
// ztp.query built-in, over the proxy's own connection and identity, to see what a
// message would touch before deciding it.
type EffectQueries struct {
	// Methods are full gRPC method names ("/etcdserverpb.KV/Range"): unary methods the
	// upstream's descriptors define, which the operator vouches change nothing.
	Methods []string `yaml:"methods"`
	// MaxPerDecision bounds the queries one decision sends (default 16); one more is an
	// evaluation error, which denies.
	MaxPerDecision int `yaml:"max_per_decision"`
	// Timeout bounds all the queries of one decision together (default 2s).
	Timeout time.Duration `yaml:"timeout"`
}

// UpstreamTLS is how the proxy connects to an upstream.
type UpstreamTLS struct {
	Insecure   bool   `yaml:"insecure"`
	CA         string `yaml:"ca"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	ServerName string `yaml:"server_name"`
}

// Policy locates the Rego policies.
type Policy struct {
	Paths []string `yaml:"paths"`
	Mode  string   `yaml:"mode"` // enforce | dryrun
}

// Audit configures the audit log.
type Audit struct {
	Path       string   `yaml:"path"`
	Redact     []string `yaml:"redact"`
	SigningKey string   `yaml:"signing_key"` // ed25519 PEM; signs checkpoints of the chain head
	// CheckpointInterval is how often a signed checkpoint is written (default 1m).
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	Readers            []string      `yaml:"readers"` // groups allowed to export/verify via the control API

	// CheckpointDir receives a file per signed checkpoint (needs SigningKey):
	// storage the proxy host cannot rewrite, or a directory a shipper drains.
	CheckpointDir string `yaml:"checkpoint_dir"`
	// CheckpointCommand is run (argv, no shell) with each signed checkpoint
	// on stdin (needs SigningKey); failures are retried with backoff.
	CheckpointCommand []string `yaml:"checkpoint_command"`
	// CheckpointCommandTimeout bounds one run of CheckpointCommand (default 30s).
	CheckpointCommandTimeout time.Duration `yaml:"checkpoint_command_timeout"`
	// MaxRequestBytes bounds the recorded rendering of one request (default
	// 64 KiB): a longer one is kept as its first MaxRequestBytes bytes, marked
	// truncated; its size and SHA-256 are always recorded.
	MaxRequestBytes int `yaml:"max_request_bytes"`
	// Headers is the allow-list of request headers the proxy reads for the
	// policy input and the audit record (default DefaultAuditHeaders); every
	// other header is neither shown to policies nor recorded. An empty list
	// reads none.
	Headers []string `yaml:"headers"`
	// MinFreeBytes is the free-space watermark of the audit file's file system
	// (default 1 GiB; 0: no watermark): below it readiness is degraded.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
}

// DefaultAuditHeaders are read when audit.headers is absent: the caller's
// justification and ticket, and headers that identify the client and the
// request but carry no credential (etcd's clients send client-api-version).
var DefaultAuditHeaders = []string{"x-ztp-justification", "x-ztp-ticket", "user-agent", "x-request-id", "traceparent", "client-api-version"}

// Defaults and bounds of the audit section.
const (
	DefaultAuditMaxRequestBytes = 64 << 10
	DefaultAuditMinFreeBytes    = 1 << 30
	maxAuditRequestBytes        = 16 << 20
)

// credentialHeaders carry credentials (or, -bin, binary data) in every client
// that sends them: audit.headers may not list them.
var credentialHeaders = map[string]bool{
	"authorization": true, "proxy-authorization": true, "cookie": true, "set-cookie": true,
	"token": true, "x-api-key": true, "x-vault-token": true, "x-auth-token": true,
}

// Log configures the proxy's structured log on stderr.
type Log struct {
	Format string `yaml:"format"` // text | json
	Level  string `yaml:"level"`  // debug | info | warn | error
}

// Limits bound what one caller can make the proxy do.
type Limits struct {
	MaxMessageBytes      int           `yaml:"max_message_bytes"`
	MaxConcurrentStreams uint32        `yaml:"max_concurrent_streams"`
	MaxUnaryDeadline     time.Duration `yaml:"max_unary_deadline"`
	MaxHeaderBytes       uint32        `yaml:"max_header_bytes"` // request metadata per call
	MaxConnections       int           `yaml:"max_connections"`  // 0 = unlimited
	// FirstMessageTimeout ends a call whose client sent no request message
	// within it (default DefaultFirstMessageTimeout).
	FirstMessageTimeout time.Duration `yaml:"first_message_timeout"`
	// MaxStreamsPerPrincipal bounds the calls one principal has open at once,
	// across all its connections (default DefaultMaxStreamsPerPrincipal).
	MaxStreamsPerPrincipal int `yaml:"max_streams_per_principal"`
	// MaxDecodedNodes and MaxDecodeDepth bound the work of decoding one
	// request message (field occurrences; nested messages): a message over
	// either is decided undecoded, as too_complex.
	MaxDecodedNodes int `yaml:"max_decoded_nodes"`
	MaxDecodeDepth  int `yaml:"max_decode_depth"`
}

// Defaults applied to keys the file leaves out.
const (
	DefaultMaxMessageBytes      = 4 << 20
	DefaultMaxConcurrentStreams = 1000
	DefaultMaxHeaderBytes       = 64 << 10
	DefaultEffectQueriesMax     = 16
	DefaultEffectQueriesTimeout = 2 * time.Second
	maxEffectQueriesMax         = 1000
	maxEffectQueriesTimeout     = time.Minute
	maxMessageBytesCeiling      = 256 << 20

	// Every gRPC client sends the request of a unary or server-streaming call
	// with the call itself, and etcd's clients send a watch's or keep-alive's
	// first request as they open the stream: 10s is far beyond any of them.
	DefaultFirstMessageTimeout = 10 * time.Second
	// One client on one connection can never reach it (max_concurrent_streams
	// is 1000 per connection too); it bounds a principal that opens many.
	DefaultMaxStreamsPerPrincipal = 1000
)

// Error is one problem with the file, located by line and key path.
type Error struct {
	File string
	Line int    // 0 when the key is absent from the file
	Key  string // e.g. "upstreams[0].address"
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(filepath.Base(e.File))
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads, parses and validates the file at path.
func Load(file string) (*Config, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(abs, data)
}

// LoadOffline reads, parses and validates the file at path as Load does, except that the
// files it names (certificates, keys, descriptor sets, policies) are not opened: for
// tools that read its settings on another machine, such as ztpctl policy test in a CI job
// that checks out the policies and ztp.yaml but holds no keys.
func LoadOffline(file string) (*Config, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(abs, data, true)
}

// Parse parses and validates data as if read from file (used to resolve relative paths
// and to name the file in errors).
func Parse(file string, data []byte) (*Config, error) { return parse(file, data, false) }

func parse(file string, data []byte, offline bool) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		return nil, &Error{File: file, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	p := &parser{file: file, lines: map[string]int{}, offline: offline}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return nil, &Error{File: file, Line: doc.Line, Msg: "top level must be a mapping of keys"}
	}
	p.walk(doc, reflect.TypeFor[Config](), "")
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	var c Config
	if err := doc.Decode(&c); err != nil {
		return nil, p.decodeError(err)
	}
	c.File = file
	_, c.Breakglass.Enabled = p.lines["breakglass"]
	_, c.Tracing.Enabled = p.lines["tracing"]
	if _, ok := p.lines["tracing.sample_ratio"]; c.Tracing.Enabled && !ok {
		// Absent, not 0: 0 is meaningful (trace only what callers sampled).
		c.Tracing.SampleRatio = 1
	}
	// Absent, not empty: an empty list is meaningful (read no header), and so
	// is min_free_bytes: 0 (no watermark).
	if _, ok := p.lines["audit.headers"]; !ok {
		c.Audit.Headers = append([]string(nil), DefaultAuditHeaders...)
	}
	if _, ok := p.lines["audit.min_free_bytes"]; !ok {
		c.Audit.MinFreeBytes = DefaultAuditMinFreeBytes
	}
	c.applyDefaults()
	p.validate(&c)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return &c, nil
}

// parser collects errors and remembers the line of every key path so that
// validation errors, found after decoding, can still point into the file.
type parser struct {
	file    string
	lines   map[string]int
	errs    []error
	offline bool // the files the config names are not opened (LoadOffline)
}

func (p *parser) errorf(key, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: p.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// line finds the line of key, or of its closest present parent.
func (p *parser) line(key string) int {
	for k := key; k != ""; {
		if l, ok := p.lines[k]; ok {
			return l
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

// walk checks n against the yaml-tagged struct type t, reporting unknown keys
// and recording lines; it descends into structs and slices of structs.
func (p *parser) walk(n *yaml.Node, t reflect.Type, prefix string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeFor[time.Duration]() {
			return
		}
		if n.Kind != yaml.MappingNode {
			if !(n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
				p.errs = append(p.errs, &Error{File: p.file, Line: n.Line, Key: prefix, Msg: "must be a mapping"})
			}
			return
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name != "" && name != "-" {
				fields[name] = f.Type
			}
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := k.Value
			if prefix != "" {
				key = prefix + "." + k.Value
			}
			p.lines[key] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				p.errs = append(p.errs, &Error{File: p.file, Line: k.Line, Key: key, Msg: "unknown key" + suggest(k.Value, fields)})
				continue
			}
			if seen[k.Value] {
				p.errs = append(p.errs, &Error{File: p.file, Line: k.Line, Key: key, Msg: "duplicate key"})
			}
			seen[k.Value] = true
			p.walk(v, ft, key)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return // a scalar where a list belongs is reported by the decoder
		}
		for i, item := range n.Content {
			key := fmt.Sprintf("%s[%d]", prefix, i)
			p.lines[key] = item.Line
			p.walk(item, t.Elem(), key)
		}
	}
}

func suggest(got string, fields map[string]reflect.Type) string {
	var names []string
	for name := range fields {
		names = append(names, name)
	}
	for _, name := range names {
		if strings.EqualFold(strings.ReplaceAll(name, "_", ""), strings.ReplaceAll(strings.ReplaceAll(got, "-", ""), "_", "")) {
			return fmt.Sprintf(" (did you mean %q?)", name)
		}
	}
	return ""
}

// decodeError turns yaml.v3's type errors ("line 7: cannot unmarshal !!str `x` into int")
// into located errors.
func (p *parser) decodeError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return &Error{File: p.file, Msg: err.Error()}
	}
	var errs []error
	for _, msg := range te.Errors {
		line := 0
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			num, tail, _ := strings.Cut(rest, ": ")
			if l, err := strconv.Atoi(num); err == nil {
				line, msg = l, tail
			}
		}
		key := ""
		for k, l := range p.lines {
			if l == line && (key == "" || len(k) > len(key)) {
				key = k
			}
		}
		errs = append(errs, &Error{File: p.file, Line: line, Key: key, Msg: msg})
	}
	return errors.Join(errs...)
}

func (c *Config) applyDefaults() {
	if c.TLS.ClientAuth == "" {
		c.TLS.ClientAuth = "require"
	}
	if c.Policy.Mode == "" {
		c.Policy.Mode = "enforce"
	}
	if c.Identity.JWT != nil {
		if c.Identity.JWT.PrincipalClaim == "" {
			c.Identity.JWT.PrincipalClaim = "sub"
		}
		if c.Identity.JWT.Leeway == 0 {
			c.Identity.JWT.Leeway = 30 * time.Second
		}
	}
	if c.Breakglass.MaxDuration == 0 {
		c.Breakglass.MaxDuration = time.Hour
	}
	if c.Audit.CheckpointInterval == 0 {
		c.Audit.CheckpointInterval = time.Minute
	}
	if c.Audit.CheckpointCommandTimeout == 0 {
		c.Audit.CheckpointCommandTimeout = 30 * time.Second
	}
	if c.Audit.MaxRequestBytes == 0 {
		c.Audit.MaxRequestBytes = DefaultAuditMaxRequestBytes
	}
	if c.Limits.MaxMessageBytes == 0 {
		c.Limits.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.Limits.MaxConcurrentStreams == 0 {
		c.Limits.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if c.Limits.MaxHeaderBytes == 0 {
		c.Limits.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.Limits.FirstMessageTimeout == 0 {
		c.Limits.FirstMessageTimeout = DefaultFirstMessageTimeout
	}
	if c.Limits.MaxStreamsPerPrincipal == 0 {
		c.Limits.MaxStreamsPerPrincipal = DefaultMaxStreamsPerPrincipal
	}
	if c.Limits.MaxDecodedNodes == 0 {
		c.Limits.MaxDecodedNodes = decode.DefaultMaxNodes
	}
	if c.Limits.MaxDecodeDepth == 0 {
		c.Limits.MaxDecodeDepth = decode.DefaultMaxDepth
	}
	for _, u := range c.Upstreams {
		if q := u.EffectQueries; q != nil {
			if q.MaxPerDecision == 0 {
				q.MaxPerDecision = DefaultEffectQueriesMax
			}
			if q.Timeout == 0 {
				q.Timeout = DefaultEffectQueriesTimeout
			}
		}
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Tracing.Enabled && c.Tracing.ServiceName == "" {
		c.Tracing.ServiceName = "ztp-proxy"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
}

// Resolve makes a path from the file absolute relative to the file's directory.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || c.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.File), p)
}

// checkEffectQueries checks what can be checked without the descriptors; the proxy checks
// at start-up that each method is a unary method the descriptors define.
func (p *parser) checkEffectQueries(key string, u Upstream) {
	q := u.EffectQueries
	if q == nil {
		return
	}
	if u.Descriptors == "" {
		p.errorf(key, "needs descriptors: the proxy encodes queries and checks their methods with them")
	}
	if len(q.Methods) == 0 {
		p.errorf(key+".methods", "at least one method is required")
	}
	seen := map[string]bool{}
	for j, m := range q.Methods {
		mk := fmt.Sprintf("%s.methods[%d]", key, j)
		svc, name, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
		switch {
		case !strings.HasPrefix(m, "/") || !ok || svc == "" || name == "" || strings.Contains(name, "/"):
			p.errorf(mk, "want a full method name /package.Service/Method, got %q", m)
		case seen[m]:
			p.errorf(mk, "duplicate method %q", m)
		}
		seen[m] = true
		if !slices.ContainsFunc(u.Services, func(g string) bool { ok, _ := path.Match(g, svc); return ok }) {
			p.errorf(mk, "%s is not routed to this upstream (services: %v)", m, u.Services)
		}
	}
	if q.MaxPerDecision < 0 || q.MaxPerDecision > maxEffectQueriesMax {
		p.errorf(key+".max_per_decision", "must be between 1 and %d, got %d", maxEffectQueriesMax, q.MaxPerDecision)
	}
	if q.Timeout < 0 || q.Timeout > maxEffectQueriesTimeout {
		p.errorf(key+".timeout", "must be positive and at most %v, got %v", maxEffectQueriesTimeout, q.Timeout)
	}
}

func (p *parser) validate(c *Config) {
	p.checkAddr("listen", c.Listen, true)

	// The proxy authenticates every caller by its certificate: TLS is not optional.
	p.checkFile(c, "tls.cert", c.TLS.Cert, true)
	p.checkFile(c, "tls.key", c.TLS.Key, true)
	p.checkFile(c, "tls.client_ca", c.TLS.ClientCA, true)
	if c.TLS.Cert != "" && c.TLS.Key != "" && len(p.errs) == 0 && !p.offline {
		if _, err := tls.LoadX509KeyPair(c.Resolve(c.TLS.Cert), c.Resolve(c.TLS.Key)); err != nil {
			p.errorf("tls.cert", "cannot load key pair: %v", err)
		}
	}
	if c.TLS.ClientCA != "" {
		p.checkCA(c, "tls.client_ca", c.TLS.ClientCA)
	}
	switch c.TLS.ClientAuth {
	case "require", "verify_if_given":
	default:
		p.errorf("tls.client_auth", "must be require or verify_if_given, got %q", c.TLS.ClientAuth)
	}

	if j := c.Identity.JWT; j != nil {
		if j.Issuer == "" {
			p.errorf("identity.jwt.issuer", "required")
		}
		if j.Audience == "" {
			p.errorf("identity.jwt.audience", "required")
		}
		p.checkFile(c, "identity.jwt.jwks_file", j.JWKSFile, true)
		if j.Leeway < 0 || j.Leeway > 5*time.Minute {
			p.errorf("identity.jwt.leeway", "must be between 0s and 5m")
		}
		if c.TLS.ClientAuth == "require" {
			p.errorf("tls.client_auth", "is require, so token-only clients cannot connect: use verify_if_given with identity.jwt")
		}
	}
	if c.Identity.JWT == nil && c.TLS.ClientAuth == "verify_if_given" {
		p.errorf("tls.client_auth", "verify_if_given without identity.jwt only lets callers without certificates reach the proxy to be refused (and audited): use require")
	}
	if len(c.Identity.Principals) == 0 {
		p.errorf("identity.principals", "at least one rule is required: principals matching no rule are rejected")
	}
	for i, r := range c.Identity.Principals {
		key := fmt.Sprintf("identity.principals[%d]", i)
		p.checkGlob(key+".match", r.Match)
		if r.Kind != "automation" && r.Kind != "human" {
			p.errorf(key+".kind", "must be automation or human, got %q", r.Kind)
		}
		if strings.Contains(r.Person, "{*}") && (strings.Count(r.Match, "*") != 1 || strings.ContainsAny(r.Match, "?[\\")) {
			p.errorf(key+".person", "{*} needs a match with exactly one '*' and no '?', '[' or '\\', got %q", r.Match)
		}
	}

	if len(c.Upstreams) == 0 {
		p.errorf("upstreams", "at least one upstream is required")
	}
	names := map[string]bool{}
	for i, u := range c.Upstreams {
		key := fmt.Sprintf("upstreams[%d]", i)
		switch {
		case u.Name == "":
			p.errorf(key+".name", "required")
		case names[u.Name]:
			p.errorf(key+".name", "duplicate upstream name %q", u.Name)
		}
		names[u.Name] = true
		p.checkAddr(key+".address", u.Address, false)
		if len(u.Services) == 0 {
			p.errorf(key+".services", "at least one service glob is required")
		}
		for j, s := range u.Services {
			p.checkGlob(fmt.Sprintf("%s.services[%d]", key, j), s)
		}
		if u.Descriptors != "" && u.Reflection {
			p.errorf(key+".reflection", "set either descriptors or reflection, not both")
		}
		p.checkFile(c, key+".descriptors", u.Descriptors, false)
		t := u.TLS
		if t.Insecure && (t.CA != "" || t.Cert != "" || t.Key != "") {
			p.errorf(key+".tls.insecure", "insecure cannot be combined with ca, cert or key")
		}
		if (t.Cert == "") != (t.Key == "") {
			p.errorf(key+".tls.cert", "cert and key must be given together")
		}
		p.checkFile(c, key+".tls.ca", t.CA, false)
		p.checkFile(c, key+".tls.cert", t.Cert, false)
		p.checkFile(c, key+".tls.key", t.Key, false)
		if t.CA != "" {
			p.checkCA(c, key+".tls.ca", t.CA)
		}
		p.checkEffectQueries(key+".effect_queries", u)
	}

	if len(c.Policy.Paths) == 0 {
		p.errorf("policy.paths", "at least one policy file or directory is required")
	}
	for i, pp := range c.Policy.Paths {
		p.checkFile(c, fmt.Sprintf("policy.paths[%d]", i), pp, true)
	}
	if c.Policy.Mode != "enforce" && c.Policy.Mode != "dryrun" {
		p.errorf("policy.mode", "must be enforce or dryrun, got %q", c.Policy.Mode)
	}

	for i, r := range c.RateLimits {
		key := fmt.Sprintf("rate_limits[%d]", i)
		if r.Match.Principal != "" {
			p.checkGlob(key+".match.principal", r.Match.Principal)
		}
		if r.Match.Method != "" {
			p.checkGlob(key+".match.method", r.Match.Method)
		}
		if r.Match.Kind != "" && r.Match.Kind != "automation" && r.Match.Kind != "human" {
			p.errorf(key+".match.kind", "must be automation or human, got %q", r.Match.Kind)
		}
		if r.RPS <= 0 {
			p.errorf(key+".rps", "must be greater than 0")
		}
		if r.Burst < 1 {
			p.errorf(key+".burst", "must be at least 1")
		}
		switch r.Unit {
		case "", UnitMessages, UnitResponseMessages, UnitResponseBytes:
		default:
			p.errorf(key+".unit", "must be %s, %s or %s, got %q", UnitMessages, UnitResponseMessages, UnitResponseBytes, r.Unit)
		}
	}
	prefixes := map[string]bool{}
	for i, b := range c.Budgets {
		key := fmt.Sprintf("budgets[%d]", i)
		if b.Prefix == "" {
			p.errorf(key+".prefix", "required")
		} else if prefixes[b.Prefix] {
			p.errorf(key+".prefix", "duplicate prefix %q", b.Prefix)
		}
		prefixes[b.Prefix] = true
		if b.Limit <= 0 {
			p.errorf(key+".limit", "must be greater than 0")
		}
		if b.Per <= 0 {
			p.errorf(key+".per", "must be a positive duration such as 1h")
		}
	}

	bg := c.Breakglass
	if bg.Enabled {
		if _, set := p.lines["breakglass.approvals_required"]; !set {
			p.errorf("breakglass.approvals_required", "required when breakglass is configured (0 = self-service, N = N other humans must approve)")
		}
	}
	if bg.MaxDuration < time.Minute || bg.MaxDuration > 7*24*time.Hour {
		p.errorf("breakglass.max_duration", "must be between 1m and 168h")
	}
	if bg.ApprovalsRequired < 0 || bg.ApprovalsRequired > 10 {
		p.errorf("breakglass.approvals_required", "must be between 0 and 10")
	}
	if bg.ApprovalsRequired > 0 && len(bg.ApproverGroups) == 0 {
		p.errorf("breakglass.approver_groups", "required when approvals_required > 0")
	}
	if _, set := p.lines["breakglass.max_pending_per_person"]; set && (bg.MaxPendingPerPerson < 1 || bg.MaxPendingPerPerson > 100) {
		p.errorf("breakglass.max_pending_per_person", "must be between 1 and 100")
	}
	if bg.NotifyWebhook != "" {
		if u, err := url.Parse(bg.NotifyWebhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.errorf("breakglass.notify_webhook", "must be an http(s) URL")
		}
	}
	if c.Metrics.Listen != "" {
		p.checkAddr("metrics.listen", c.Metrics.Listen, true)
	}

	if c.Audit.Path == "" {
		p.errorf("audit.path", "required: nothing is forwarded without an audit log")
	} else if dir := filepath.Dir(c.Resolve(c.Audit.Path)); !p.offline && !isDir(dir) {
		p.errorf("audit.path", "directory %s does not exist", dir)
	}

	p.checkFile(c, "audit.signing_key", c.Audit.SigningKey, false)
	if c.Audit.SigningKey != "" && !p.offline {
		// The loader start-up uses, so that validate refuses what serve would.
		if _, err := audit.LoadSigner(c.Resolve(c.Audit.SigningKey)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			p.errorf("audit.signing_key", "%v", err)
		}
	}
	if c.Audit.CheckpointInterval < time.Second {
		p.errorf("audit.checkpoint_interval", "must be at least 1s")
	}
	if c.Audit.CheckpointDir != "" {
		if c.Audit.SigningKey == "" {
			p.errorf("audit.checkpoint_dir", "needs audit.signing_key: without it there are no checkpoints to write")
		} else if dir := c.Resolve(c.Audit.CheckpointDir); !p.offline && !isDir(dir) {
			p.errorf("audit.checkpoint_dir", "%s is not a directory", dir)
		}
	}
	if len(c.Audit.CheckpointCommand) > 0 {
		if c.Audit.SigningKey == "" {
			p.errorf("audit.checkpoint_command", "needs audit.signing_key: without it there are no checkpoints to ship")
		}
		if c.Audit.CheckpointCommand[0] == "" {
			p.errorf("audit.checkpoint_command", "the first element is the program to run and must not be empty")
		}
	}
	if c.Audit.CheckpointCommandTimeout < time.Second {
		p.errorf("audit.checkpoint_command_timeout", "must be at least 1s")
	}
	if n := c.Audit.MaxRequestBytes; n < 1024 || n > maxAuditRequestBytes {
		p.errorf("audit.max_request_bytes", "must be between 1024 and %d", maxAuditRequestBytes)
	}
	if c.Audit.MinFreeBytes < 0 {
		p.errorf("audit.min_free_bytes", "must not be negative (0: no watermark)")
	}
	seenHeader := map[string]bool{}
	for i, h := range c.Audit.Headers {
		key := fmt.Sprintf("audit.headers[%d]", i)
		switch {
		case !validHeaderName(h):
			p.errorf(key, "%q is not a lower-case header name ([0-9a-z-_.])", h)
		case credentialHeaders[h] || strings.HasSuffix(h, "-bin"):
			p.errorf(key, "%q carries credentials or binary data and is never recorded", h)
		case strings.HasPrefix(h, "grpc-") || (strings.HasPrefix(h, "x-ztp-") && h != "x-ztp-justification" && h != "x-ztp-ticket"):
			p.errorf(key, "%q is reserved (grpc-*, x-ztp-*): only x-ztp-justification and x-ztp-ticket may be listed", h)
		case seenHeader[h]:
			p.errorf(key, "duplicate header %q", h)
		}
		seenHeader[h] = true
	}

	if c.Limits.MaxMessageBytes < 0 || c.Limits.MaxMessageBytes > maxMessageBytesCeiling {
		p.errorf("limits.max_message_bytes", "must be between 1 and %d", maxMessageBytesCeiling)
	}
	if c.Limits.MaxConnections < 0 {
		p.errorf("limits.max_connections", "must not be negative")
	}
	// No way to switch these off: a stream that never sends a message, or a
	// principal holding streams without bound, costs the proxy memory and a
	// goroutine each, for as long as the client likes.
	if c.Limits.FirstMessageTimeout < time.Second || c.Limits.FirstMessageTimeout > 5*time.Minute {
		p.errorf("limits.first_message_timeout", "must be between 1s and 5m")
	}
	if c.Limits.MaxStreamsPerPrincipal < 1 {
		p.errorf("limits.max_streams_per_principal", "must be at least 1")
	}
	if c.Limits.MaxDecodedNodes < 1 {
		p.errorf("limits.max_decoded_nodes", "must be at least 1")
	}
	if c.Limits.MaxDecodeDepth < 1 || c.Limits.MaxDecodeDepth > decode.MaxDepthCeiling {
		p.errorf("limits.max_decode_depth", "must be between 1 and %d", decode.MaxDepthCeiling)
	}
	if c.Limits.MaxHeaderBytes < 1024 {
		p.errorf("limits.max_header_bytes", "must be at least 1024")
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		p.errorf("log.format", "must be text or json, got %q", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.errorf("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Limits.MaxUnaryDeadline < 0 {
		p.errorf("limits.max_unary_deadline", "must not be negative")
	}
	if t := c.Tracing; t.Enabled {
		p.checkAddr("tracing.otlp_endpoint", t.OTLPEndpoint, false)
		if t.Insecure && t.CA != "" {
			p.errorf("tracing.insecure", "insecure cannot be combined with ca")
		}
		p.checkFile(c, "tracing.ca", t.CA, false)
		if t.CA != "" {
			p.checkCA(c, "tracing.ca", t.CA)
		}
		// Written so that NaN fails too.
		if !(t.SampleRatio >= 0 && t.SampleRatio <= 1) {
			p.errorf("tracing.sample_ratio", "must be between 0 and 1")
		}
		if strings.TrimSpace(t.ServiceName) == "" {
			p.errorf("tracing.service_name", "must not be blank")
		}
	}
}

func (p *parser) checkAddr(key, addr string, listen bool) {
	if addr == "" {
		p.errorf(key, "required (host:port)")
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.errorf(key, "%v", strings.TrimPrefix(err.Error(), "address "+addr+": "))
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || (!listen && n == 0) {
		p.errorf(key, "bad port %q", port)
	}
	if !listen && host == "" {
		p.errorf(key, "host is required")
	}
}

func (p *parser) checkGlob(key, pattern string) {
	if pattern == "" {
		p.errorf(key, "empty pattern")
		return
	}
	if _, err := path.Match(pattern, ""); err != nil {
		p.errorf(key, "bad glob %q: %v", pattern, err)
	}
}

func (p *parser) checkFile(c *Config, key, name string, required bool) {
	if name == "" {
		if required {
			p.errorf(key, "required")
		}
		return
	}
	if p.offline {
		return
	}
	if _, err := os.Stat(c.Resolve(name)); err != nil {
		p.errorf(key, "%s: %v", name, errors.Unwrap(err))
	}
}

func (p *parser) checkCA(c *Config, key, name string) {
	if p.offline {
		return
	}
	data, err := os.ReadFile(c.Resolve(name))
	if err != nil {
		return // reported by checkFile
	}
	if err := checkCABundle(data); err != nil {
		p.errorf(key, "%s %v", name, err)
	}
}

// checkCABundle accepts PEM that holds at least one CA certificate (basic
// constraints CA:TRUE) or a self-signed certificate, which pins itself (an etcd
// started with a self-signed server certificate is verified that way). A leaf
// issued by some CA, given where the CA belongs, is a mistake that verification
// would only reveal at the first handshake, as "unknown authority": a bundle
// without any trust anchor is refused up front.
func checkCABundle(data []byte) error {
	var certs, leaves int
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("holds a malformed certificate (number %d): %w", certs+1, err)
		}
		certs++
		if cert.BasicConstraintsValid && cert.IsCA || selfSigned(cert) {
			return nil
		}
		leaves++
	}
	if certs == 0 {
		return errors.New("holds no PEM certificate")
	}
	return fmt.Errorf("holds no CA certificate: %d certificate(s), none with basic constraints CA:TRUE or self-signed (a leaf where a CA belongs?)", leaves)
}

// selfSigned reports whether cert names itself as its issuer and its own key
// verifies its signature.
func selfSigned(cert *x509.Certificate) bool {
	return bytes.Equal(cert.RawIssuer, cert.RawSubject) &&
		cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) == nil
}

// validHeaderName accepts what gRPC allows as a metadata key, in the lower
// case gRPC delivers keys in: a key written in upper case would match nothing.
func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, c := range []byte(h) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// PolicyData is what policies read of this file, as data.ztp_config: the change budgets'
// limits by key prefix, so that a policy need not repeat them (and cannot drift from
// them): {"budgets": {"delete:": {"limit": 100, "per": "1h0m0s", "per_seconds": 3600}}}.
// Nil when there is nothing to pass.
func (c *Config) PolicyData() map[string]any {
	if len(c.Budgets) == 0 {
		return nil
	}
	budgets := make(map[string]any, len(c.Budgets))
	for _, b := range c.Budgets {
		budgets[b.Prefix] = map[string]any{"limit": b.Limit, "per": b.Per.String(), "per_seconds": b.Per.Seconds()}
	}
	return map[string]any{"budgets": budgets}
}
