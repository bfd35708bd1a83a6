package gobgp_test

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ztp-dev/ztp/decode"
	"github.com/ztp-dev/ztp/internal/grpcfwd"
)

// TestGoBGPTrapsEndToEnd sends hand-built AddPath requests, as an attacker's client would,
// first to gobgpd directly — to show that the real gobgpd installs a default route from
// each — and then through the real ztp-proxy with the example's policy, which must forbid
// every one of them, even though their nlri field shows an allowed prefix or none that is
// /0. What the README calls "what gobgpd really reads of a path" is proved here, not
// assumed.
func TestGoBGPTrapsEndToEnd(t *testing.T) {
	requireGoBGP(t)
	ctx := testCtx(t, 2*time.Minute)
	proxyBin, _ := buildBins(t)
	ports := freePorts(t, 2)
	gobgpd := startGoBGPd(ctx, t, ports[0])
	dir := t.TempDir()
	mintCerts(t, dir)
	px := startProxy(ctx, t, proxyBin, dir, ports[1], gobgpd)

	ps, err := decode.LoadProtoset("gobgp.protoset")
	if err != nil {
		t.Fatal(err)
	}
	direct, err := grpc.NewClient(gobgpd, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	viaProxy, err := grpc.NewClient(ports[1], grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(t, dir, "injector"))))
	if err != nil {
		t.Fatal(err)
	}
	defer viaProxy.Close()

	const method = "/apipb.GobgpApi/AddPath"
	send := func(conn *grpc.ClientConn, request string) error {
		b, err := decode.EncodeJSON(ctx, ps, method, []byte(request))
		if err != nil {
			t.Fatalf("EncodeJSON(%s): %v", request, err)
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return conn.Invoke(cctx, method, &grpcfwd.Frame{Data: b}, &grpcfwd.Frame{}, grpc.ForceCodecV2(grpcfwd.Codec{}))
	}
	rib := func(args ...string) string {
		out, err := gobgp(ctx, gobgpd, append([]string{"global", "rib"}, args...)...)
		if err != nil {
			t.Fatalf("gobgp global rib %v (direct) = %q, %v", args, out, err)
		}
		return out
	}
	path := func(nlri, extra string) string {
		return `{"path":{"nlri":` + nlri + `,"family":{"afi":"AFI_IP","safi":"SAFI_UNICAST"},` +
			`"pattrs":[{"@type":"type.googleapis.com/apipb.OriginAttribute"},{"@type":"type.googleapis.com/apipb.NextHopAttribute","nextHop":"192.0.2.254"}]` + extra + `}}`
	}
	allowed := `{"@type":"type.googleapis.com/apipb.IPAddressPrefix","prefix":"10.100.3.0","prefixLen":24}`
	traps := []struct {
		name, request, reason string
	}{
		{
			// The one-byte NLRI 0x00 is 0.0.0.0/0; gobgpd decodes it instead of nlri.
			name:    "nlriBinary behind an allowed nlri",
			request: path(allowed, `,"nlriBinary":"AA=="`),
			reason:  "binary NLRI (nlriBinary) is forbidden: the policy cannot read it",
		},
		{
			// 256 is 0 in gobgpd's uint8.
			name:    "prefixLen 256",
			request: path(`{"@type":"type.googleapis.com/apipb.IPAddressPrefix","prefix":"0.0.0.0","prefixLen":256}`, ""),
			reason:  "prefix length above 128 is forbidden (gobgpd truncates it to 8 bits)",
		},
		{
			// gobgpd resolves the type after the last "/"; the proxy renders it canonically.
			name:    "foreign type URL",
			request: path(`{"@type":"evil.example/apipb.IPAddressPrefix","prefix":"0.0.0.0"}`, ""),
			reason:  "announcing a default route (prefix length 0) is forbidden",
		},
	}
	for _, tc := range traps {
		t.Run(tc.name, func(t *testing.T) {
			if out := rib("0.0.0.0/0"); strings.Contains(out, "0.0.0.0/0") {
				t.Fatalf("gobgpd has a default route before the test:\n%s", out)
			}
			err := send(viaProxy, tc.request)
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), tc.reason) {
				t.Errorf("AddPath %s through the proxy: %v; want PermissionDenied naming %q", tc.request, err, tc.reason)
			}
			if out := rib("0.0.0.0/0"); strings.Contains(out, "0.0.0.0/0") {
				t.Errorf("gobgpd installed a default route from the request the proxy refused:\n%s", out)
			}
			// The same bytes sent to gobgpd directly install a default route: the
			// trap is real.
			if err := send(direct, tc.request); err != nil {
				t.Fatalf("AddPath %s to gobgpd directly: %v", tc.request, err)
			}
			if out := rib("0.0.0.0/0"); !strings.Contains(out, "0.0.0.0/0") {
				t.Errorf("gobgpd did not install a default route from %s:\n%s\nthe policy's premise about gobgpd is wrong", tc.request, out)
			}
			if out, err := gobgp(ctx, gobgpd, "global", "rib", "del", "all", "-a", "ipv4"); err != nil {
				t.Fatalf("gobgp global rib del all (direct) = %q, %v", out, err)
			}
		})
	}
	if err := px.Stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Errorf("ztp-proxy after SIGTERM: %v, want exit status 0\nstderr:\n%s", err, px.Stderr.String())
	}
}
