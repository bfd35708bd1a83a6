package proxy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/internal/testclock"
	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// floodPolicy denies humans every upload; it reads no request field, so a
// 4 MiB message costs the policy nothing and the test measures the log.
const floodPolicy = `package ztp

default allow := false

allow if input.principal.kind == "automation"

deny contains "humans may not call UnaryCall" if {
	input.principal.kind == "human"
	input.rpc == "UnaryCall"
}
`

// floodMessages is how many 4 MiB messages TestPrincipalRefusalFloodIsBounded
// sends: by default 600 (two minutes of the clock: two windows, each held to
// the same bound), which takes ~30 s; the outcome the README quotes is
// -flood-messages 3000 (ten minutes), which takes 2-6 min on 2 shared vCPUs.
var floodMessages = flag.Int("flood-messages", 600, "4 MiB denied messages TestPrincipalRefusalFloodIsBounded sends at 5/s of the injected clock")

// TestPrincipalRefusalFloodIsBounded is the outcome of issue 13 item 5: one
// authenticated principal sending maximal (4 MiB) denied messages at its
// rate limit (5/s) for ten minutes of the injected clock grows the audit file
// by at most a few MiB, every refusal is accounted for (a record of its own
// or a count in its principal's summary), and another principal's calls keep
// succeeding throughout.
func TestPrincipalRefusalFloodIsBounded(t *testing.T) {
	messages := *floodMessages
	if raceEnabled && !flagSet("flood-messages") {
		messages = 60 // one window's bound still holds; each 4 MiB message costs ~1 s under -race
	}
	e, clock := startFlood(t, 5, 20)
	alice := e.Dial(t, proxytest.AliceID)
	deployer := e.Dial(t, proxytest.DeployerID)
	// The largest message the proxy accepts (limits.max_message_bytes, 4 MiB).
	big := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: make([]byte, 4<<20-16)}}
	if n := proto.Size(big); n > 4<<20 || n < 4<<20-32 {
		t.Fatalf("message is %d bytes, want just under 4 MiB", n)
	}

	firstSeq := uint64(len(e.Records(t))) + 1
	before := fileSize(t, e.AuditFile)
	for i := range messages {
		_, err := alice.UnaryCall(proxytest.Ctx(t), big)
		proxytest.WantCode(t, fmt.Sprintf("alice's denied message %d", i), err, codes.PermissionDenied, "humans may not call UnaryCall")
		if i%50 == 0 {
			if _, err := deployer.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ok")}}); err != nil {
				t.Fatalf("deployer's call during the flood (after %d of alice's): %v", i, err)
			}
		}
		clock.Advance(200 * time.Millisecond)
	}
	clock.Advance(time.Minute)
	e.Server.Pipeline().FlushRefusals(proxytest.Ctx(t), false)
	recs := e.Records(t)
	var recorded int64 // the bytes of the records written during the flood
	err := e.Server.AuditStore().Export(proxytest.Ctx(t), audit.Filter{FromSeq: firstSeq}, func(_ uint64, line []byte) error {
		recorded += int64(len(line))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.Stop(t) // the file's final size, committed and closed
	after := fileSize(t, e.AuditFile)
	growth := after - before
	t.Logf("%d denied 4 MiB messages from one principal over %v: audit file %d → %d bytes (+%.2f MiB; bbolt grows it in powers of two), records written %.2f MiB",
		messages, time.Duration(messages)*200*time.Millisecond, before, after, float64(growth)/(1<<20), float64(recorded)/(1<<20))
	// Per one-minute window: 256 KiB of refusal records, the one crossing it
	// (64 KiB of rendering and its framing) and a summary; plus the other
	// principal's calls.
	windows := int64(messages)/300 + 1
	if limit := windows*(256+70)<<10 + 256<<10; recorded > limit {
		t.Errorf("records written during the flood: %d bytes, want at most %d", recorded, limit)
	}
	if growth > 8<<20 {
		t.Errorf("audit file grew by %d bytes, want at most 8 MiB", growth)
	}

	// Every refusal is accounted for, and the big ones that got a record of
	// their own carry the size and SHA-256 of the exact bytes, not the bytes.
	raw, _ := proto.Marshal(big)
	sum := sha256.Sum256(raw)
	single, summarised, summaries := aliceRefusals(t, recs, func(r *audit.Record) {
		if r.RequestSHA256 != hex.EncodeToString(sum[:]) || r.RequestBytes != uint64(len(raw)) || r.Request != nil || len(r.RequestTruncated) != 64<<10 {
			t.Fatalf("alice's record seq %d: %d bytes, sha256 %s, request %d bytes, truncated %d bytes; want %d bytes, %x, no request, a 64 KiB prefix",
				r.Seq, r.RequestBytes, r.RequestSHA256, len(r.Request), len(r.RequestTruncated), len(raw), sum)
		}
	})
	if single+summarised != messages || summaries == 0 {
		t.Errorf("alice's refusals: %d records of their own + %d counted in %d summaries = %d, want all %d accounted for",
			single, summarised, summaries, single+summarised, messages)
	}
	t.Logf("alice: %d refusal records of their own, %d refusals in %d summaries", single, summarised, summaries)
}

// startFlood starts a proxy whose injected clock the test moves, with
// floodPolicy and a rate limit for humans.
func startFlood(t *testing.T, rps, burst int) (*proxytest.Env, *testclock.Clock) {
	clock := testclock.New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	e := proxytest.Start(t, proxytest.Options{
		Policy: floodPolicy,
		Extra:  fmt.Sprintf("rate_limits:\n  - match: { kind: human }\n    rps: %d\n    burst: %d\n", rps, burst),
		Proxy:  func(o *proxy.Options) { o.Now = clock.Now },
	})
	return e, clock
}

// aliceRefusals counts alice's refusal records of their own (each passed to
// each) and the refusals her summary records count.
func aliceRefusals(t *testing.T, recs []*audit.Record, each func(*audit.Record)) (single, summarised, summaries int) {
	t.Helper()
	for _, r := range recs {
		if r.Type != audit.TypeRequest || r.Principal == nil || r.Principal.ID != proxytest.AliceID {
			continue
		}
		if r.Method == "" {
			var n int
			if _, err := fmt.Sscanf(r.Reasons[0], "%d more refused messages of "+proxytest.AliceID, &n); err != nil {
				t.Fatalf("summary reason %q: %v", r.Reasons[0], err)
			}
			summarised += n
			summaries++
			continue
		}
		single++
		each(r)
	}
	return single, summarised, summaries
}

// flagSet reports whether the named flag was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestAuditHeadersAllowList: credentials and headers nobody listed never
// reach the policy or the record, whatever their name; the justification,
// the ticket and the allowed client identification do, bounded. The policy
// sees exactly the metadata the record keeps.
func TestAuditHeadersAllowList(t *testing.T) {
	// The policy's reason holds a digest of input.metadata (a reason is cut
	// to 1 KiB), so the test sees what the policy saw.
	e := proxytest.Start(t, proxytest.Options{Policy: `package ztp

default allow := false

deny contains sprintf("metadata %v justification %v ticket %v", [crypto.sha256(json.marshal(input.metadata)), substring(input.justification, 0, 20), input.ticket])
`})
	secrets := map[string]string{
		"authorization":       "Bearer s3cret-authorization",
		"proxy-authorization": "Basic s3cret-proxy-authorization",
		"x-api-key":           "s3cret-x-api-key",
		"x-vault-token":       "s3cret-x-vault-token",
		"cookie":              "session=s3cret-cookie",
		"token":               "s3cret-etcd-token",
		"x-my-new-header":     "s3cret-unknown-header",
		"x-ztp-principal":     "s3cret-spoofed-principal",
	}
	kv := []string{
		"x-ztp-justification", "INC-7 rotate " + strings.Repeat("j", 3000),
		"x-ztp-ticket", "INC-7",
		"x-request-id", "r-1",
		"x-request-id", strings.Repeat("r", 2000),
		"x-request-id", "r-3",
	}
	for k, v := range secrets {
		kv = append(kv, k, v)
	}
	ctx := metadata.AppendToOutgoingContext(proxytest.Ctx(t), kv...)
	_, err := e.Dial(t, proxytest.DeployerID).UnaryCall(ctx, &testgrpc.SimpleRequest{})
	proxytest.WantCode(t, "UnaryCall", err, codes.PermissionDenied, "metadata")

	reqs := e.Requests(t, "/grpc.testing.TestService/UnaryCall")
	if len(reqs) != 1 {
		t.Fatalf("request records = %d, want 1", len(reqs))
	}
	r := reqs[0]
	line := recordLine(t, e, r.Seq)
	for k, v := range secrets {
		if strings.Contains(line, v) {
			t.Errorf("record holds %s's value %q:\n%s", k, v, line)
		}
		if _, ok := r.Metadata[k]; ok {
			t.Errorf("record metadata has %s", k)
		}
	}
	if !strings.HasPrefix(r.Justification, "INC-7 rotate jjj") || len(r.Justification) > 1100 || !strings.HasSuffix(r.Justification, "[truncated]") || r.Ticket != "INC-7" {
		t.Errorf("justification %d bytes %.40q…, ticket %q; want the caller's, cut to 1 KiB and marked", len(r.Justification), r.Justification, r.Ticket)
	}
	ids := r.Metadata["x-request-id"]
	if len(ids) != 2 || ids[0] != "r-1" || !strings.HasSuffix(ids[1], "[truncated]") || len(ids[0])+len(ids[1]) > 1100 {
		t.Errorf("x-request-id = %d values %.60q; want r-1 and the second cut to 1 KiB in all, the third dropped", len(ids), ids)
	}
	if ua := r.Metadata["user-agent"]; len(ua) != 1 || !strings.Contains(ua[0], "grpc-go") {
		t.Errorf("user-agent = %q, want grpc-go's", ua)
	}
	for _, k := range []string{"x-ztp-justification", "x-ztp-ticket", ":authority", "content-type"} {
		if _, ok := r.Metadata[k]; ok {
			t.Errorf("record metadata has %s", k)
		}
	}
	// The policy saw the same metadata.
	md, _ := json.Marshal(r.Metadata)
	sum := sha256.Sum256(md)
	want := hex.EncodeToString(sum[:])
	if len(r.Reasons) != 1 || !strings.HasPrefix(r.Reasons[0], "metadata "+want+" justification INC-7 rotate") {
		t.Errorf("policy saw %.300q\nwant metadata with the SHA-256 of %s", r.Reasons, md)
	}
}

// TestRequestDigest: every decision record carries the size and SHA-256 of
// the exact message bytes; a rendering longer than audit.max_request_bytes
// is kept as its first bytes, marked, and the upstream still gets the whole
// message.
func TestRequestDigest(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{Audit: "  max_request_bytes: 2048\n"})
	c := e.Dial(t, proxytest.DeployerID)
	small := &testgrpc.SimpleRequest{ResponseSize: 3, Payload: &testgrpc.Payload{Body: []byte("hi")}}
	large := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte(strings.Repeat("x", 10000))}}
	for _, m := range []*testgrpc.SimpleRequest{small, large} {
		if _, err := c.UnaryCall(proxytest.Ctx(t), m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	reqs := e.Requests(t, "/grpc.testing.TestService/UnaryCall")
	if len(reqs) != 2 {
		t.Fatalf("request records = %d, want 2", len(reqs))
	}
	for i, m := range []*testgrpc.SimpleRequest{small, large} {
		raw, _ := proto.Marshal(m)
		sum := sha256.Sum256(raw)
		if r := reqs[i]; r.RequestBytes != uint64(len(raw)) || r.RequestSHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("record %d: request_bytes %d, request_sha256 %s; want %d, %x", i, r.RequestBytes, r.RequestSHA256, len(raw), sum)
		}
	}
	if r := reqs[0]; r.Request == nil || r.RequestTruncated != "" {
		t.Errorf("small request: request %s, request_truncated %q; want the whole rendering", r.Request, r.RequestTruncated)
	}
	if r := reqs[1]; r.Request != nil || len(r.RequestTruncated) != 2048 || !strings.HasPrefix(r.RequestTruncated, `{"`) || !strings.Contains(r.RequestTruncated, `"payload":{"body":"eHh4eHh4`) {
		t.Errorf("large request: request %d bytes, request_truncated %d bytes %.30q; want none and its first 2048 bytes", len(r.Request), len(r.RequestTruncated), r.RequestTruncated)
	}
	// An empty message is 0 bytes with the SHA-256 of nothing.
	empty := e.Requests(t, "/grpc.testing.TestService/EmptyCall")
	if len(empty) != 1 || empty[0].RequestBytes != 0 || empty[0].RequestSHA256 != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("EmptyCall record: %+v, want request_bytes 0 and the SHA-256 of nothing", empty)
	}
	if line := recordLine(t, e, empty[0].Seq); !strings.Contains(line, `"request_bytes":0,`) {
		t.Errorf("EmptyCall record line lacks request_bytes 0: %s", line)
	}
}

// recordLine is the stored line of record seq, as audit export prints it.
func recordLine(t *testing.T, e *proxytest.Env, seq uint64) string {
	t.Helper()
	var b strings.Builder
	err := e.Server.AuditStore().Export(proxytest.Ctx(t), audit.Filter{FromSeq: seq}, func(_ uint64, line []byte) error {
		if b.Len() == 0 {
			b.Write(line)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestAuditDiskWatermark: below audit.min_free_bytes readiness turns
// degraded with the reason (still ready: calls go on), the gauges show it and
// it is logged, before the disk is full; above it again, all clear.
func TestAuditDiskWatermark(t *testing.T) {
	var free atomic.Uint64
	free.Store(10 << 30)
	var logs proxytest.SyncBuffer
	var auditDir string // set before the proxy starts
	e := proxytest.Prepare(t, proxytest.Options{
		Audit: "  min_free_bytes: 1073741824\n",
		Proxy: func(o *proxy.Options) {
			o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			o.DiskFree = func(dir string) (uint64, error) {
				if dir != auditDir {
					return 0, fmt.Errorf("statfs of %s, want the audit file's directory", dir)
				}
				return free.Load(), nil
			}
		},
	})
	auditDir = filepath.Dir(e.AuditFile)
	e.Restart(t)
	degraded := func() (bool, string) {
		_, checks := e.Server.Ready()
		return strings.HasPrefix(checks["audit_disk"], "degraded: "), checks["audit_disk"]
	}
	if d, c := degraded(); d || c != "ok" {
		t.Fatalf("audit_disk with 10 GiB free = %q, want ok", c)
	}
	free.Store(512 << 20)
	waitFor(t, 10*time.Second, func() bool { d, _ := degraded(); return d })
	ok, checks := e.Server.Ready()
	if !ok || !strings.Contains(checks["audit_disk"], "536870912 bytes free") || !strings.Contains(checks["audit_disk"], "below audit.min_free_bytes 1073741824") {
		t.Errorf("Ready() = %v, %q; want ready, degraded naming free space and the watermark", ok, checks["audit_disk"])
	}
	code, body := scrape(t, e, "/readyz")
	if code != 200 || !strings.Contains(body, `"degraded":true`) {
		t.Errorf("/readyz = %d %s, want 200 degraded", code, body)
	}
	_, metrics := scrape(t, e, "/metrics")
	for _, want := range []string{"ztp_audit_disk_low 1", "ztp_audit_disk_free_bytes 5.36870912e+08"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !strings.Contains(logs.String(), "audit disk space below audit.min_free_bytes") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
	if _, err := e.Dial(t, proxytest.DeployerID).UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Errorf("call while degraded = %v, want served", err)
	}

	free.Store(2 << 30)
	waitFor(t, 10*time.Second, func() bool { d, _ := degraded(); return !d })
	if _, metrics := scrape(t, e, "/metrics"); !strings.Contains(metrics, "ztp_audit_disk_low 0") {
		t.Error("/metrics lacks ztp_audit_disk_low 0 after recovery")
	}
	if !strings.Contains(logs.String(), "audit disk space back above") {
		t.Errorf("no recovery logged:\n%s", logs.String())
	}
}

// TestPrincipalRefusalsOfEveryKind: rate-limited messages and calls to
// methods no upstream serves draw on the same per-principal refusal budget
// as denials (a rate limit cannot bound refusals: a message over it is one).
func TestPrincipalRefusalsOfEveryKind(t *testing.T) {
	e, clock := startFlood(t, 1, 1)
	conn := e.Conn(t, proxytest.AliceID)
	alice := testgrpc.NewTestServiceClient(conn)
	const calls = 600
	for i := range calls {
		if i%2 == 0 {
			_, err := alice.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{})
			if status.Code(err) != codes.ResourceExhausted && status.Code(err) != codes.PermissionDenied {
				t.Fatalf("UnaryCall %d = %v, want refused", i, err)
			}
		} else {
			err := conn.Invoke(proxytest.Ctx(t), "/nope.Service/Call", &testgrpc.Empty{}, &testgrpc.Empty{})
			proxytest.WantCode(t, "unrouted call", err, codes.Unimplemented, "no upstream serves")
		}
	}
	clock.Advance(time.Minute)
	e.Server.Pipeline().FlushRefusals(proxytest.Ctx(t), false)
	kinds := map[string]int{}
	single, summarised, _ := aliceRefusals(t, e.Records(t), func(r *audit.Record) { kinds[r.Decision+" "+r.Method]++ })
	// About 1.2 KiB a record against 256 KiB a window: ~200 of 600.
	if single+summarised != calls || single > 260 || summarised == 0 {
		t.Errorf("%d refusals recorded on their own (%v), %d in summaries; want all %d accounted for, at most ~256 KiB of records", single, kinds, summarised, calls)
	}
	if kinds["ratelimited /grpc.testing.TestService/UnaryCall"] == 0 || kinds["deny /nope.Service/Call"] == 0 {
		t.Errorf("recorded refusals %v, want rate-limited and unrouted ones among them", kinds)
	}
}

// TestLongMethodNamesStayWithinTheRefusalBudget: the method name is the
// caller's own :path, up to limits.max_header_bytes. A principal's refusals
// of calls named with ~50 KiB each must still add no more than the refusal
// budget's bytes to the log, and no record may carry the whole name.
func TestLongMethodNamesStayWithinTheRefusalBudget(t *testing.T) {
	e, clock := startFlood(t, 1, 1)
	conn := e.Conn(t, proxytest.AliceID)
	firstSeq := uint64(len(e.Records(t))) + 1
	long := strings.Repeat("A", 50<<10)
	const calls = 200
	for i := range calls {
		method := "/grpc.testing.TestService/" + long // routed, unknown to the descriptors
		if i%2 == 1 {
			method = "/nope.Service/" + long // not routed
		}
		err := conn.Invoke(proxytest.Ctx(t), method, &testgrpc.Empty{}, &testgrpc.Empty{})
		if c := status.Code(err); c != codes.PermissionDenied && c != codes.ResourceExhausted && c != codes.Unimplemented {
			t.Fatalf("call %d = %v, want refused", i, err)
		}
	}
	clock.Advance(time.Minute)
	e.Server.Pipeline().FlushRefusals(proxytest.Ctx(t), false)
	recorded, largest := recordedSince(t, e, firstSeq)
	// One window: 256 KiB, the record crossing it and a summary.
	if limit := int64(256+70+8) << 10; recorded > limit {
		t.Errorf("%d refusals with %d-byte method names wrote %d bytes of records, want at most %d", calls, len(long), recorded, limit)
	}
	if largest > 8<<10 {
		t.Errorf("largest record %d bytes: a record keeps the whole method name", largest)
	}
}

// TestEscapedTruncatedRenderingsStayWithinTheRefusalBudget: a rendering cut
// to audit.max_request_bytes is stored as a JSON string, so each quote or
// backslash in it takes two bytes: a request of quotes makes a truncated
// record twice audit.max_request_bytes. The principal's refusal budget must
// still hold the bytes written.
func TestEscapedTruncatedRenderingsStayWithinTheRefusalBudget(t *testing.T) {
	e, clock := startFlood(t, 1000, 1000)
	alice := e.Dial(t, proxytest.AliceID)
	firstSeq := uint64(len(e.Records(t))) + 1
	quotes := &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Message: strings.Repeat(`"`, 256<<10)}}
	const calls = 40
	for i := range calls {
		_, err := alice.UnaryCall(proxytest.Ctx(t), quotes)
		proxytest.WantCode(t, fmt.Sprintf("denied message %d", i), err, codes.PermissionDenied, "humans may not call UnaryCall")
	}
	clock.Advance(time.Minute)
	e.Server.Pipeline().FlushRefusals(proxytest.Ctx(t), false)
	recorded, _ := recordedSince(t, e, firstSeq)
	// One window: 256 KiB, the record crossing it (at most twice 64 KiB of
	// rendering, and its framing) and a summary.
	if limit := int64(256+2*64+8) << 10; recorded > limit {
		t.Errorf("%d denied messages of quotes wrote %d bytes of records, want at most %d", calls, recorded, limit)
	}
}

// echoPolicy denies humans with a reason quoting what they sent, as
// examples/gobgp's "route %s is not an IPv4/IPv6 unicast prefix" does.
const echoPolicy = `package ztp

default allow := false

deny contains sprintf("status message %s is not allowed", [input.request.responseStatus.message]) if {
	input.principal.kind == "human"
}

deny contains sprintf("payload %d is not allowed", [i]) if {
	input.principal.kind == "human"
	some i in numbers.range(1, 5000)
}
`

// TestReasonsQuotingTheRequestStayWithinTheRefusalBudget: a policy's
// reasons may quote the request, which the caller sizes (up to 4 MiB) and
// which audit.max_request_bytes does not cut. A principal's refusals must
// still add about the refusal budget's bytes to the log per window, and the
// crossing record is bounded like any other.
func TestReasonsQuotingTheRequestStayWithinTheRefusalBudget(t *testing.T) {
	clock := testclock.New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	e := proxytest.Start(t, proxytest.Options{Policy: echoPolicy, Proxy: func(o *proxy.Options) { o.Now = clock.Now }})
	alice := e.Dial(t, proxytest.AliceID)
	firstSeq := uint64(len(e.Records(t))) + 1
	big := &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Message: strings.Repeat("x", 3<<20)}}
	const calls = 5
	for i := range calls {
		_, err := alice.UnaryCall(proxytest.Ctx(t), big)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("call %d = %v, want PERMISSION_DENIED", i, err)
		}
	}
	clock.Advance(time.Minute)
	e.Server.Pipeline().FlushRefusals(proxytest.Ctx(t), false)
	recorded, _ := recordedSince(t, e, firstSeq)
	if limit := int64(256+2*64+64+8) << 10; recorded > limit {
		t.Errorf("%d denied messages whose reasons quote 3 MiB wrote %d bytes of records, want at most %d", calls, recorded, limit)
	}
}

// recordedSince returns the bytes of the records from seq firstSeq on, and
// the largest of them.
func recordedSince(t *testing.T, e *proxytest.Env, firstSeq uint64) (total, largest int64) {
	t.Helper()
	err := e.Server.AuditStore().Export(proxytest.Ctx(t), audit.Filter{FromSeq: firstSeq}, func(_ uint64, line []byte) error {
		total += int64(len(line))
		largest = max(largest, int64(len(line)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total, largest
}
