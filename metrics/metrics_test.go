package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/internal/version"
)

func TestReadiness(t *testing.T) {
	var broken atomic.Bool
	probes := make(chan bool, 16)
	r := NewReadiness(time.Hour, map[string]Check{
		"audit": func(context.Context) error {
			if broken.Load() {
				return errors.New("audit log not writable")
			}
			return nil
		},
		"policy": func(context.Context) error { return nil },
	})
	r.OnProbe = func(ok bool) { probes <- ok }
	r.Start()
	defer r.Stop()
	if ok := <-probes; !ok {
		t.Fatal("first probe not ready")
	}
	m := New()
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		m.Handler(r).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != 200 || !strings.Contains(body, `"audit":"ok"`) {
		t.Errorf("/readyz = %d %s, want 200 with audit ok", code, body)
	}
	broken.Store(true)
	r.probe()
	if ok := <-probes; ok {
		t.Fatal("probe after failure reported ready")
	}
	if code, body := get(); code != 503 || !strings.Contains(body, "audit log not writable") {
		t.Errorf("/readyz = %d %s, want 503 naming the failure", code, body)
	}
}

// TestReadinessDegraded: a failing warning shows, with its reason, but leaves
// the proxy ready.
func TestReadinessDegraded(t *testing.T) {
	var low atomic.Bool
	r := NewReadiness(time.Hour, map[string]Check{"audit": func(context.Context) error { return nil }})
	r.Warnings = map[string]Check{"audit_disk": func(context.Context) error {
		if low.Load() {
			return errors.New("100 bytes free, below 200")
		}
		return nil
	}}
	r.Start()
	defer r.Stop()
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		New().Handler(r).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != 200 || strings.Contains(body, "degraded") || !strings.Contains(body, `"audit_disk":"ok"`) {
		t.Errorf("/readyz = %d %s, want 200, not degraded", code, body)
	}
	low.Store(true)
	r.probe()
	if ok, checks := r.Ready(); !ok || !r.Degraded() || checks["audit_disk"] != "degraded: 100 bytes free, below 200" {
		t.Errorf("Ready() = %v, %v, Degraded() = %v; want ready and degraded naming the reason", ok, checks, r.Degraded())
	}
	if code, body := get(); code != 200 || !strings.Contains(body, `"degraded":true`) || !strings.Contains(body, "below 200") {
		t.Errorf("/readyz = %d %s, want 200 degraded with the reason", code, body)
	}
}

func TestReadyBeforeFirstProbe(t *testing.T) {
	r := NewReadiness(time.Hour, map[string]Check{})
	if ok, _ := r.Ready(); ok {
		t.Error("Ready() before any probe = true, want false")
	}
}

func TestMetricsIsolated(t *testing.T) {
	a, b := New(), New() // two proxies in one process must not collide
	a.AuditRecords.Inc()
	a.SetPolicy("sha256:1", "enforce")
	a.SetPolicy("sha256:2", "enforce")
	rec := httptest.NewRecorder()
	a.Handler(NewReadiness(time.Hour, nil)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	if !strings.Contains(body, "ztp_audit_records_total 1") || strings.Contains(body, `version="sha256:1"`) || !strings.Contains(body, `version="sha256:2"`) {
		t.Errorf("metrics of a: want 1 record and only the latest policy version:\n%s", body)
	}
	rec = httptest.NewRecorder()
	b.Handler(NewReadiness(time.Hour, nil)).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if body := rec.Body.String(); !strings.Contains(body, "ztp_audit_records_total 0") || strings.Contains(body, "ztp_policy_info{") {
		t.Errorf("metrics of b saw a's counts; want 0 records and no policy:\n%s", body)
	}
}

func TestBuildInfo(t *testing.T) {
	m := New()
	build := version.Get()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ztp_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("ztp_build_info has %d series, want 1", len(mf.GetMetric()))
		}
		s := mf.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range s.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		want := map[string]string{"version": build.Version, "revision": build.Revision, "go": build.Go}
		if fmt.Sprint(labels) != fmt.Sprint(want) || s.GetGauge().GetValue() != 1 {
			t.Errorf("ztp_build_info = %v %v, want %v 1", labels, s.GetGauge().GetValue(), want)
		}
		return
	}
	t.Error("no ztp_build_info metric")
}
