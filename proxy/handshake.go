package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"

	"github.com/ztp-dev/ztp/metrics"
)

// Handshake failure windows: per window, the first handshakeLogsPerReason
// failures of each reason are logged one by one, the rest in one summary line
// per reason when the window ends. A flood of bad handshakes, from however
// many addresses, writes at most (handshakeLogsPerReason+1) lines per reason
// per window; the metric counts every failure.
const (
	handshakeWindow        = time.Minute
	handshakeLogsPerReason = 5
)

// classifyHandshake names why a server-side TLS handshake failed, as one of
// metrics.HandshakeReasons, with a detail for the log. now is the clock the
// TLS stack verified certificates with.
func classifyHandshake(err error, now time.Time) (reason, detail string) {
	detail = err.Error()
	var (
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		header   tls.RecordHeaderError
		op       *net.OpError
		timeouts interface{ Timeout() bool }
	)
	switch {
	case strings.Contains(detail, "didn't provide a certificate"):
		return "no_client_certificate", detail
	case errors.As(err, &op) && op.Op == "remote error":
		// The client refused the handshake: most often it does not trust the
		// proxy's certificate, or expected another name.
		return "client_alert", detail
	case errors.As(err, &unknown):
		return "unknown_authority", detail
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		if invalid.Cert != nil && now.Before(invalid.Cert.NotBefore) {
			return "not_yet_valid", detail
		}
		return "expired", detail
	case errors.As(err, &verify), errors.As(err, &invalid),
		strings.Contains(detail, "failed to parse"), strings.Contains(detail, "bad certificate"):
		return "bad_certificate", detail
	case errors.As(err, &header):
		if bytes.HasPrefix(header.RecordHeader[:], []byte("PRI *")) {
			detail += " (the client spoke plaintext HTTP/2: a gRPC client without TLS?)"
		}
		return "protocol_error", detail
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		return "client_closed", detail
	case errors.As(err, &timeouts) && timeouts.Timeout():
		return "timeout", detail
	case strings.HasPrefix(detail, "tls: "):
		return "protocol_error", detail
	}
	return "other", detail
}

// handshakeLog logs and counts failed TLS handshakes (see handshakeWindow).
type handshakeLog struct {
	log     *slog.Logger
	counter *prometheus.CounterVec
	now     func() time.Time // the window's clock
	tlsNow  func() time.Time // the clock certificates were verified with

	mu         sync.Mutex
	start      time.Time      // of the current window
	logged     map[string]int // per reason, this window
	suppressed map[string]int // per reason, this window, past the logged ones

	stopOnce sync.Once
	stopCh   chan struct{}
	done     chan struct{}
}

func newHandshakeLog(log *slog.Logger, m *metrics.Metrics, now func() time.Time) *handshakeLog {
	return &handshakeLog{
		log: log, counter: m.HandshakeFailures, now: now, tlsNow: time.Now,
		start: now(), logged: map[string]int{}, suppressed: map[string]int{},
	}
}

func (h *handshakeLog) failed(peer net.Addr, err error) {
	reason, detail := classifyHandshake(err, h.tlsNow())
	// Counted last, once the failure is in the log or held for the summary:
	// whoever sees the count sees the rest.
	defer h.counter.WithLabelValues(reason).Inc()
	h.mu.Lock()
	h.rollLocked()
	n := h.logged[reason]
	if n >= handshakeLogsPerReason {
		h.suppressed[reason]++
		h.mu.Unlock()
		return
	}
	h.logged[reason] = n + 1
	h.mu.Unlock()
	attrs := []any{"reason", reason, "peer", addrString(peer), "err", detail}
	if n+1 == handshakeLogsPerReason {
		attrs = append(attrs, "note", "further failures with this reason are summarised at the end of the "+handshakeWindow.String()+" window")
	}
	h.log.Warn("TLS handshake failed", attrs...)
}

// rollLocked ends the current window if it is over, logging its summaries.
func (h *handshakeLog) rollLocked() {
	now := h.now()
	if now.Sub(h.start) < handshakeWindow {
		return
	}
	h.flushLocked()
	h.start = now
}

func (h *handshakeLog) flushLocked() {
	for reason, n := range h.suppressed {
		h.log.Warn("TLS handshake failures not logged one by one", "reason", reason, "count", n, "window_start", h.start.UTC().Format(time.RFC3339))
	}
	clear(h.suppressed)
	clear(h.logged)
}

// run ends windows on time also when no further failure arrives, until stop.
func (h *handshakeLog) run(every time.Duration) {
	h.stopCh, h.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-h.stopCh:
				return
			case <-t.C:
				h.mu.Lock()
				h.rollLocked()
				h.mu.Unlock()
			}
		}
	}()
}

// stop ends run and logs what the last window suppressed.
func (h *handshakeLog) stop() {
	h.stopOnce.Do(func() {
		if h.stopCh != nil {
			close(h.stopCh)
			<-h.done
		}
		h.mu.Lock()
		h.flushLocked()
		h.mu.Unlock()
	})
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// handshakeCreds reports every failed server handshake to a handshakeLog: a
// client that cannot connect (no certificate, an untrusted or expired one, a
// plaintext client on the TLS port) otherwise leaves no trace on the proxy.
type handshakeCreds struct {
	credentials.TransportCredentials
	log *handshakeLog
}

func (c handshakeCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		c.log.failed(raw.RemoteAddr(), err)
	}
	return conn, info, err
}

func (c handshakeCreds) Clone() credentials.TransportCredentials {
	return handshakeCreds{TransportCredentials: c.TransportCredentials.Clone(), log: c.log}
}
