package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/policy"
)

// TestMain lets the test binary play the roles run starts copies of itself as
// (os.Executable is the test binary under go test).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		if code, ok := runRole(os.Args[1], os.Args[2:]); ok {
			os.Exit(code)
		}
	}
	goleak.VerifyTestMain(m)
}

// buildProxy builds the ztp-proxy binary the full path runs.
func buildProxy(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build ztp-proxy with")
	}
	bin := filepath.Join(t.TempDir(), "ztp-proxy")
	out, err := exec.Command(gobin, "build", "-o", bin, "github.com/ztp-dev/ztp/cmd/ztp-proxy").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ztp-proxy: %v\n%s", err, out)
	}
	return bin
}

// TestRunReportsEveryRow runs the whole benchmark at tiny durations and checks
// that the JSON holds every row with plausible figures, that the table shows
// them, and that the full path really went through the pipeline: every call
// was allowed and audited.
func TestRunReportsEveryRow(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and builds ztp-proxy")
	}
	dir := t.TempDir()
	o := options{
		proxyBin:     buildProxy(t),
		dir:          dir,
		keep:         true, // to read the audit log afterwards; t.TempDir removes it
		jsonFile:     filepath.Join(dir, "bench.json"),
		warmup:       100 * time.Millisecond,
		duration:     200 * time.Millisecond,
		rounds:       2,
		concurrency:  []int{1, 4},
		paths:        allPaths,
		payload:      64,
		floorSamples: 5,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var table, progress bytes.Buffer
	if _, err := run(ctx, o, &table, &progress); err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, progress.String())
	}

	b, err := os.ReadFile(o.jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("JSON report: %v\n%s", err, b)
	}
	got := map[string]row{}
	for _, r := range rep.Rows {
		got[fmt.Sprintf("%s c=%d", r.Path, r.Concurrency)] = r
	}
	for _, c := range o.concurrency {
		for _, p := range allPaths {
			key := fmt.Sprintf("%s c=%d", p, c)
			r, ok := got[key]
			if !ok {
				t.Errorf("JSON has no row %s; rows: %v", key, rep.Rows)
				continue
			}
			if r.ReqPerSec <= 0 || r.P50US <= 0 || r.P99US < r.P50US || r.Errors != 0 || len(r.Rounds) != o.rounds {
				t.Errorf("row %s: req/s %v, p50 %v µs, p99 %v µs, errors %d, %d rounds; want positive figures, p99 ≥ p50, no errors, %d rounds",
					key, r.ReqPerSec, r.P50US, r.P99US, r.Errors, len(r.Rounds), o.rounds)
			}
			if p == pathDirect && r.RatioVsDirect != 1 || r.RatioVsDirect <= 0 {
				t.Errorf("row %s: ratio vs direct %v, want 1 for direct and positive for the others", key, r.RatioVsDirect)
			}
			if p == pathFull && (r.PolicyEvalMeanUS == nil || r.AuditAppendMeanUS == nil || r.AuditRecordsPerSec == nil) {
				t.Errorf("row %s: policy %v, audit append %v, records/s %v; want the proxy's own figures", key, r.PolicyEvalMeanUS, r.AuditAppendMeanUS, r.AuditRecordsPerSec)
			}
			if !strings.Contains(table.String(), fmt.Sprintf("| %s | %d | ", p, c)) {
				t.Errorf("table has no row for %s:\n%s", key, table.String())
			}
		}
	}
	if len(rep.Rows) != len(allPaths)*len(o.concurrency) {
		t.Errorf("JSON has %d rows, want %d", len(rep.Rows), len(allPaths)*len(o.concurrency))
	}
	if f := rep.Floors; f == nil || f.FdatasyncP50US <= 0 || f.BboltCommitP50US <= 0 || f.AuditAppendP50US <= 0 || f.Samples != o.floorSamples {
		t.Errorf("floors = %+v, want positive fdatasync, bbolt commit and audit append times over %d samples", rep.Floors, o.floorSamples)
	}
	if rep.Machine.CPUs <= 0 || rep.Machine.GoVersion == "" || rep.Date == "" {
		t.Errorf("machine %+v, date %q: want CPUs, Go version and date", rep.Machine, rep.Date)
	}

	// The full path's calls are all in the audit log, allowed.
	logs, err := filepath.Glob(filepath.Join(dir, "ztp-bench-*", "proxy", "audit.db"))
	if err != nil || len(logs) != 1 {
		t.Fatalf("audit log of the full path: %v (%v), want one", logs, err)
	}
	var allowed, other int
	err = audit.ScanFile(ctx, logs[0], 1, func(r *audit.Record) error {
		if r.Type != audit.TypeRequest {
			return nil
		}
		if r.Method == "/grpc.testing.TestService/UnaryCall" && r.Decision == audit.DecisionAllow && r.Principal.ID == benchPrincipal {
			allowed++
		} else {
			other++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ScanFile: %v", err)
	}
	var fullCalls int
	for _, c := range o.concurrency {
		for _, s := range got[fmt.Sprintf("%s c=%d", pathFull, c)].Rounds {
			fullCalls += s.Calls
		}
	}
	if allowed < fullCalls || other != 0 {
		t.Errorf("audit log: %d allowed UnaryCall requests and %d others, want at least the %d calls measured on the full path and no others", allowed, other, fullCalls)
	}
}

// TestRunFailsWithoutProxyBinary: a missing binary is a start-up error, and
// no process is left behind (goleak and the parent-death signal aside, stop
// waits for each child).
func TestRunFailsWithoutProxyBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	o := options{
		proxyBin: filepath.Join(t.TempDir(), "no-such-proxy"), dir: t.TempDir(),
		warmup: time.Millisecond, duration: 10 * time.Millisecond, rounds: 1,
		concurrency: []int{1}, paths: []string{pathDirect, pathFull},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var table, progress bytes.Buffer
	_, err := run(ctx, o, &table, &progress)
	if err == nil || !strings.Contains(err.Error(), "ztp-proxy") {
		t.Fatalf("run with a missing ztp-proxy = %v, want an error naming ztp-proxy", err)
	}
	if table.Len() != 0 {
		t.Errorf("run printed a table without a measurement:\n%s", table.String())
	}
	if left, _ := filepath.Glob(filepath.Join(o.dir, "ztp-bench-*")); len(left) != 0 {
		t.Errorf("work directories left behind: %v", left)
	}
}

// TestBenchPolicy runs the policy's own tests as ztpctl policy test would:
// the full path's figures mean something only if its calls are allowed by the
// rules they are meant to exercise.
func TestBenchPolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := policy.RunTests(ctx, policy.TestOptions{Paths: []string{"testdata/policies"}})
	if err != nil {
		t.Fatalf("RunTests: %v", err)
	}
	if !rep.Passed() || rep.Count(policy.TestPass) == 0 {
		t.Errorf("policy tests: %d passed, results %+v; want all to pass", rep.Count(policy.TestPass), rep.Results)
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantPaths []string
		wantConc  []int
		wantErr   string
	}{
		{name: "defaults", wantPaths: allPaths, wantConc: []int{1, 16, 64}},
		{name: "direct is always measured, paths in documented order", args: []string{"-paths", "full,bare", "-c", "4"}, wantPaths: []string{pathDirect, pathBare, pathFull}, wantConc: []int{4}},
		{name: "direct named too", args: []string{"-paths", "direct,full,full"}, wantPaths: []string{pathDirect, pathFull}, wantConc: []int{1, 16, 64}},
		{name: "unknown path", args: []string{"-paths", "bare,nginx"}, wantErr: `unknown path "nginx"`},
		{name: "zero workers", args: []string{"-c", "1,0"}, wantErr: `"0" is not a positive worker count`},
		{name: "not a number", args: []string{"-c", "many"}, wantErr: `"many" is not a positive worker count`},
		{name: "no rounds", args: []string{"-rounds", "0"}, wantErr: "-rounds"},
		{name: "no duration", args: []string{"-duration", "0s"}, wantErr: "-duration"},
		{name: "stray argument", args: []string{"now"}, wantErr: "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			o, err := parseFlags(tc.args, &stderr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseFlags(%q) = %v, want an error containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tc.args, err)
			}
			if fmt.Sprint(o.paths) != fmt.Sprint(tc.wantPaths) || fmt.Sprint(o.concurrency) != fmt.Sprint(tc.wantConc) {
				t.Errorf("parseFlags(%q): paths %v, c %v; want %v, %v", tc.args, o.paths, o.concurrency, tc.wantPaths, tc.wantConc)
			}
		})
	}
}
