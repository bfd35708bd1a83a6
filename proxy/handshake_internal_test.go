package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/metrics"
)

// TestClassifyHandshake covers the reasons a live handshake cannot easily
// produce in a test (TestHandshakeFailuresLoggedAndCounted covers the rest),
// and checks that every reason is one the metric declares.
func TestClassifyHandshake(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	future := &x509.Certificate{NotBefore: now.Add(time.Hour), NotAfter: now.Add(2 * time.Hour)}
	past := &x509.Certificate{NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)}
	tests := []struct {
		err  error
		want string
	}{
		{errors.New("tls: client didn't provide a certificate"), "no_client_certificate"},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, "unknown_authority"},
		{&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Cert: past, Reason: x509.Expired}}, "expired"},
		{&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Cert: future, Reason: x509.Expired}}, "not_yet_valid"},
		{&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Cert: past, Reason: x509.IncompatibleUsage}}, "bad_certificate"},
		{errors.New("tls: failed to parse client certificate: x509: malformed certificate"), "bad_certificate"},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake", RecordHeader: [5]byte{'P', 'R', 'I', ' ', '*'}}, "protocol_error"},
		{errors.New("tls: client offered only unsupported versions: [301]"), "protocol_error"},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: unknown certificate authority")}, "client_alert"},
		{io.EOF, "client_closed"},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "client_closed"},
		{fmt.Errorf("handshake: %w", os.ErrDeadlineExceeded), "timeout"},
		{errors.New("something else"), "other"},
	}
	for _, tc := range tests {
		got, detail := classifyHandshake(tc.err, now)
		if got != tc.want || detail == "" {
			t.Errorf("classifyHandshake(%v) = %q, %q; want %q", tc.err, got, detail, tc.want)
		}
		if !slices.Contains(metrics.HandshakeReasons, got) {
			t.Errorf("reason %q is not in metrics.HandshakeReasons", got)
		}
	}
}
