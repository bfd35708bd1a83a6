// Package metrics holds ztp-proxy's Prometheus metrics and serves the
// operational HTTP endpoint: /metrics, /healthz (the process is up) and
// /readyz (it can do its job: the audit log is writable, a policy is loaded,
// the upstreams are reachable).
//
// Every metric lives in a registry owned by one Metrics value, never in the
// global default registry, so several proxies (or tests) in one process do
// not collide. Label values are bounded: methods are labelled only when the
// upstream's descriptors know them; anything else is "unknown".
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ztp-dev/ztp/internal/version"
)

// Metrics are the proxy's collectors.
type Metrics struct {
	Registry *prometheus.Registry

	// Decisions counts per-message decisions by upstream, method and decision
	// (allow, deny, dryrun_deny, ratelimited, error).
	Decisions *prometheus.CounterVec
	// Calls counts finished calls by upstream, method and gRPC code.
	Calls *prometheus.CounterVec
	// PolicySeconds is the time to evaluate the policy for one message.
	PolicySeconds prometheus.Histogram
	// AuditAppendSeconds is the time to durably append one record.
	AuditAppendSeconds prometheus.Histogram
	AuditRecords       prometheus.Counter
	AuditErrors        prometheus.Counter
	// AuditCommitSeconds is the duration of one group commit (both fsyncs);
	// AuditCommitRecords the records it carried.
	AuditCommitSeconds prometheus.Histogram
	AuditCommitRecords prometheus.Histogram
	// RefusalsUnrecorded counts unauthenticated refusals past the refusal
	// budget: counted into a summary record instead of a record each.
	RefusalsUnrecorded prometheus.Counter
	// PrincipalRefusalsUnrecorded counts authenticated principals' refusals
	// past their refusal budget: counted into a summary record per principal.
	PrincipalRefusalsUnrecorded prometheus.Counter
	// AuditDiskFreeBytes is the free space of the audit file's file system;
	// AuditDiskLow is 1 while it is below audit.min_free_bytes.
	AuditDiskFreeBytes prometheus.Gauge
	AuditDiskLow       prometheus.Gauge
	// ForwardSeconds is the duration of forwarded calls by upstream.
	ForwardSeconds *prometheus.HistogramVec
	// RateLimited counts refusals by kind (rate, budget, and response_volume for
	// responses a response-volume rule cut off).
	RateLimited *prometheus.CounterVec
	// PolicyReloads counts reloads by result (ok, failed).
	PolicyReloads *prometheus.CounterVec
	// PolicyInfo is 1 for the active policy version.
	PolicyInfo *prometheus.GaugeVec
	// InflightStreams is the number of calls in progress.
	InflightStreams prometheus.Gauge
	// BuildInfo is 1, labelled with the running build.
	BuildInfo *prometheus.GaugeVec
	// HandshakeFailures counts failed TLS handshakes by reason (one of
	// HandshakeReasons).
	HandshakeFailures *prometheus.CounterVec
	// CertificateExpiry is the NotAfter, in Unix seconds, of the proxy's own
	// certificates by cert (server: the serving certificate, read at start-up).
	CertificateExpiry *prometheus.GaugeVec
	// StreamsEndedEarly counts calls that ended before their first request
	// message, by reason: first_message_timeout (the proxy ended it),
	// client_cancelled (the client did), max_streams_per_principal (refused),
	// credential_ended (its credential expired or a reload refused it).
	StreamsEndedEarly *prometheus.CounterVec
	// StreamsUnrecorded counts those of them past the refusal budget: counted
	// into a summary record instead of a record each.
	StreamsUnrecorded prometheus.Counter
}

// HandshakeReasons are the values of ztp_tls_handshake_failures_total's
// reason label.
var HandshakeReasons = []string{
	"no_client_certificate", "unknown_authority", "expired", "not_yet_valid", "bad_certificate",
	"protocol_error", "client_alert", "client_closed", "timeout", "other",
}

// New creates the collectors in a fresh registry, with Go runtime and process
// collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	latency := []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
	m := &Metrics{
		Registry: r,
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztp_decisions_total", Help: "Per-message decisions by upstream, method and decision.",
		}, []string{"upstream", "method", "decision"}),
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztp_calls_total", Help: "Finished calls by upstream, method and gRPC status code.",
		}, []string{"upstream", "method", "code"}),
		PolicySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ztp_policy_eval_seconds", Help: "Time to evaluate the policy for one message.", Buckets: latency,
		}),
		AuditAppendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ztp_audit_append_seconds", Help: "Time to durably append one audit record (includes group-commit wait).", Buckets: latency,
		}),
		AuditRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ztp_audit_records_total", Help: "Audit records durably written.",
		}),
		AuditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ztp_audit_append_errors_total", Help: "Audit appends that failed (each refused a call or lost an outcome record).",
		}),
		AuditCommitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ztp_audit_commit_seconds", Help: "Duration of one audit group commit (bbolt transaction, fsyncs included).", Buckets: latency,
		}),
		AuditCommitRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ztp_audit_commit_records", Help: "Records carried by one audit group commit.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}),
		RefusalsUnrecorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ztp_refusals_unrecorded_total", Help: "Unauthenticated calls refused past the per-host refusal budget (audited in summary records).",
		}),
		PrincipalRefusalsUnrecorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ztp_principal_refusals_unrecorded_total", Help: "Authenticated principals' refusals past their per-principal refusal budget (audited in summary records).",
		}),
		AuditDiskFreeBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ztp_audit_disk_free_bytes", Help: "Free bytes (for the proxy's user) on the audit file's file system.",
		}),
		AuditDiskLow: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ztp_audit_disk_low", Help: "1 while the audit file's file system has less free space than audit.min_free_bytes.",
		}),
		ForwardSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ztp_forwarded_call_seconds", Help: "Duration of calls forwarded to an upstream.", Buckets: latency,
		}, []string{"upstream"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztp_ratelimited_total", Help: "Messages refused by a rate limit or change budget.",
		}, []string{"kind"}),
		PolicyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztp_policy_reloads_total", Help: "Policy reloads by result.",
		}, []string{"result"}),
		PolicyInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ztp_policy_info", Help: "1 for the active policy version.",
		}, []string{"version", "mode"}),
		InflightStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ztp_inflight_calls", Help: "Calls (unary and streaming) in progress.",
		}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ztp_build_info", Help: "1, labelled with the running build's version, VCS revision and Go toolchain.",
		}, []string{"version", "revision", "go"}),
		HandshakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztp_tls_handshake_failures_total", Help: "Failed TLS handshakes on the gRPC listener by reason.",
		}, []string{"reason"}),
		CertificateExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ztp_tls_certificate_expiry_timestamp_seconds", Help: "NotAfter of the proxy's certificates, in Unix seconds, by cert (server: the serving certificate).",
		}, []string{"cert"}),
		StreamsEndedEarly: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ztp_streams_ended_early_total", Help: "Calls that ended before their first request message, by reason (first_message_timeout, client_cancelled, max_streams_per_principal, credential_ended).",
		}, []string{"reason"}),
		StreamsUnrecorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ztp_streams_unrecorded_total", Help: "Calls ended before their first request message past the refusal budget (audited in summary records).",
		}),
	}
	build := version.Get()
	m.BuildInfo.WithLabelValues(build.Version, build.Revision, build.Go).Set(1)
	for _, r := range HandshakeReasons {
		m.HandshakeFailures.WithLabelValues(r) // every reason shows, at 0, from the start
	}
	r.MustRegister(m.Decisions, m.Calls, m.PolicySeconds, m.AuditAppendSeconds, m.AuditRecords, m.AuditErrors,
		m.AuditCommitSeconds, m.AuditCommitRecords, m.RefusalsUnrecorded,
		m.ForwardSeconds, m.RateLimited, m.PolicyReloads, m.PolicyInfo, m.InflightStreams, m.HandshakeFailures, m.CertificateExpiry, m.BuildInfo,
		m.StreamsEndedEarly, m.StreamsUnrecorded,
		m.PrincipalRefusalsUnrecorded, m.AuditDiskFreeBytes, m.AuditDiskLow,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveCommit records one audit group commit (audit.Options.OnCommit).
func (m *Metrics) ObserveCommit(records int, took time.Duration, err error) {
	if err != nil {
		return // the failed appends are counted by AuditErrors
	}
	m.AuditCommitSeconds.Observe(took.Seconds())
	m.AuditCommitRecords.Observe(float64(records))
}

// GaugeFunc registers a gauge whose value is read at scrape time (e.g. the number
// of active break-glass grants).
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// SetPolicy marks version as the active policy.
func (m *Metrics) SetPolicy(version, mode string) {
	m.PolicyInfo.Reset()
	m.PolicyInfo.WithLabelValues(version, mode).Set(1)
}
