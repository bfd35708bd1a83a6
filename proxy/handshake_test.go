package proxy_test

import (
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ztp-dev/ztp/internal/testclock"
	"github.com/ztp-dev/ztp/pki"
	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestHandshakeFailuresLoggedAndCounted: clients that never get past TLS are
// logged with the reason and counted in ztp_tls_handshake_failures_total, and
// a flood of them is summarised, not logged line by line.
func TestHandshakeFailuresLoggedAndCounted(t *testing.T) {
	clock := testclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	var log proxytest.SyncBuffer
	env := proxytest.Start(t, proxytest.Options{Proxy: func(o *proxy.Options) {
		o.Now = clock.Now
		o.Logger = slog.New(slog.NewTextHandler(&log, nil))
	}})
	counter := env.Server.Metrics().HandshakeFailures
	count := func(reason string) int {
		var m dto.Metric
		if err := counter.WithLabelValues(reason).Write(&m); err != nil {
			t.Fatal(err)
		}
		return int(m.GetCounter().GetValue())
	}

	// handshake runs one TLS handshake against the proxy and reads until the
	// proxy answers or closes: under TLS 1.3 the client finishes its side
	// before the proxy has judged the client's certificate.
	handshake := func(tc *tls.Config) {
		t.Helper()
		tc.ServerName, tc.NextProtos = "localhost", []string{"h2"}
		conn, err := tls.Dial("tcp", env.Addr, tc)
		if err != nil {
			return
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		conn.Read(make([]byte, 1))
		conn.Close()
	}
	waitCount := func(reason string, want int) {
		t.Helper()
		ctx := proxytest.Ctx(t)
		for count(reason) < want {
			select {
			case <-ctx.Done():
				t.Fatalf("ztp_tls_handshake_failures_total{reason=%q} = %d, want %d\nlog:\n%s", reason, count(reason), want, log.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}

	other, err := pki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Issue(pki.LeafOptions{CommonName: "x", URIs: []string{proxytest.DeployerID}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := env.CA.Issue(pki.LeafOptions{CommonName: "x", URIs: []string{proxytest.DeployerID}, Client: true,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	serverOnly, err := env.CA.Issue(pki.LeafOptions{CommonName: "x", URIs: []string{proxytest.DeployerID}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		dial   func()
		reason string
		detail string
	}{
		{"no certificate", func() { handshake(&tls.Config{RootCAs: env.CA.Pool()}) }, "no_client_certificate", "didn't provide a certificate"},
		// (A Go client offers only a certificate from a CA the server asks for;
		// an attacker's client offers anything.)
		{"another CA", func() {
			handshake(&tls.Config{RootCAs: env.CA.Pool(), GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreign.TLS, nil }})
		}, "unknown_authority", "unknown authority"},
		{"expired", func() { handshake(&tls.Config{RootCAs: env.CA.Pool(), Certificates: []tls.Certificate{expired.TLS}}) }, "expired", "expired"},
		{"server-only certificate", func() {
			handshake(&tls.Config{RootCAs: env.CA.Pool(), Certificates: []tls.Certificate{serverOnly.TLS}})
		}, "bad_certificate", "key usage"},
		{"client distrusts the proxy", func() { handshake(&tls.Config{RootCAs: other.Pool()}) }, "client_alert", "remote error"},
		{"plaintext gRPC client", func() {
			c, err := net.Dial("tcp", env.Addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			c.Read(make([]byte, 64))
			c.Close()
		}, "protocol_error", "plaintext HTTP/2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := count(tc.reason)
			tc.dial()
			waitCount(tc.reason, before+1)
			if !strings.Contains(log.String(), "reason="+tc.reason) || !strings.Contains(log.String(), tc.detail) {
				t.Errorf("log does not show reason=%s with %q:\n%s", tc.reason, tc.detail, log.String())
			}
		})
	}

	// A flood: 20 more certificate-less handshakes are all counted, and
	// logged one by one only up to the window's allowance for the reason.
	lines := func() int { return strings.Count(log.String(), "reason=no_client_certificate peer=") }
	before, linesBefore := count("no_client_certificate"), lines()
	for range 20 {
		handshake(&tls.Config{RootCAs: env.CA.Pool()})
	}
	waitCount("no_client_certificate", before+20)
	if got := lines() - linesBefore; got != 4 { // 5 per window, one of them logged above
		t.Errorf("the flood logged %d lines for no_client_certificate, want 4 (5 a window)", got)
	}
	// The window ends: the next failure first logs what was held back.
	clock.Advance(time.Minute)
	handshake(&tls.Config{RootCAs: env.CA.Pool()})
	waitCount("no_client_certificate", before+21)
	if !strings.Contains(log.String(), `msg="TLS handshake failures not logged one by one" reason=no_client_certificate count=16`) {
		t.Errorf("no summary of the 16 held-back failures:\n%s", log.String())
	}
}
