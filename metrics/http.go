package metrics

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness condition; nil means ready.
type Check func(ctx context.Context) error

// Readiness runs checks in the background so that /readyz answers at once and
// notices a failure within one interval even when no traffic flows.
type Readiness struct {
	checks   map[string]Check
	interval time.Duration
	// OnProbe, when set before Start, is told the outcome of every probe
	// (e.g. to mirror it into the gRPC health service).
	OnProbe func(ready bool)
	// Warnings, when set before Start, are probed with the checks but only
	// degrade readiness: a failing one shows as "degraded: …" in the checks
	// and sets "degraded" in /readyz, which stays 200. For conditions an
	// operator must act on before they stop the proxy (a filling disk), where
	// taking the proxy out of service early would do the harm sooner.
	Warnings map[string]Check

	mu     sync.RWMutex
	state  map[string]string // check → "" (ok) or the error
	warn   map[string]string // warning → "" (ok) or the error
	stop   chan struct{}
	done   chan struct{}
	probed bool
}

// NewReadiness returns a Readiness evaluating checks every interval once Start runs.
func NewReadiness(interval time.Duration, checks map[string]Check) *Readiness {
	return &Readiness{checks: checks, interval: interval, state: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// Start probes once synchronously, then every interval until Stop.
func (r *Readiness) Start() {
	r.probe()
	go func() {
		defer close(r.done)
		t := time.NewTicker(r.interval)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				r.probe()
			}
		}
	}()
}

// Stop ends the background probing.
func (r *Readiness) Stop() {
	close(r.stop)
	<-r.done
}

func (r *Readiness) probe() {
	run := func(checks map[string]Check) map[string]string {
		state := make(map[string]string, len(checks))
		for name, c := range checks {
			ctx, cancel := context.WithTimeout(context.Background(), r.interval)
			if err := c(ctx); err != nil {
				state[name] = err.Error()
			} else {
				state[name] = ""
			}
			cancel()
		}
		return state
	}
	state, warn := run(r.checks), run(r.Warnings)
	r.mu.Lock()
	r.state, r.warn, r.probed = state, warn, true
	r.mu.Unlock()
	if r.OnProbe != nil {
		ok, _ := r.Ready()
		r.OnProbe(ok)
	}
}

// Ready reports the last probe: ok and each check's status, warnings
// included ("degraded: …" when failing; they do not affect ok).
func (r *Readiness) Ready() (bool, map[string]string) {
	ok, _, out := r.status()
	return ok, out
}

// Degraded reports whether a warning failed in the last probe.
func (r *Readiness) Degraded() bool {
	_, degraded, _ := r.status()
	return degraded
}

func (r *Readiness) status() (ok, degraded bool, out map[string]string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ok = r.probed
	out = make(map[string]string, len(r.state)+len(r.warn))
	for k, v := range r.state {
		if v != "" {
			ok = false
			out[k] = v
		} else {
			out[k] = "ok"
		}
	}
	for k, v := range r.warn {
		if v != "" {
			degraded = true
			out[k] = "degraded: " + v
		} else {
			out[k] = "ok"
		}
	}
	return ok, degraded, out
}

// Handler serves /metrics, /healthz and /readyz.
func (m *Metrics) Handler(r *Readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, degraded, checks := r.status()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		body := map[string]any{"ready": ok, "checks": checks}
		if degraded {
			body["degraded"] = true
		}
		json.NewEncoder(w).Encode(body)
	})
	return mux
}
