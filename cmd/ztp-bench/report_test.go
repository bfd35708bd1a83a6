package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func f(v float64) *float64 { return &v }

func TestSummarize(t *testing.T) {
	tests := []struct {
		name    string
		samples map[rowKey][]sample
		path    string
		want    row // the fields compared: medians, ratios, added p50, errors, proxy CPU
	}{
		{
			name: "ratio pairs each round with its own direct run",
			samples: map[rowKey][]sample{
				{pathDirect, 1}: {{ReqPerSec: 1000, P50US: 100}, {ReqPerSec: 2000, P50US: 50}, {ReqPerSec: 1000, P50US: 100}},
				{pathBare, 1}:   {{ReqPerSec: 500, P50US: 300, figures: figures{ProxyCPUPerReqUS: f(80)}}, {ReqPerSec: 900, P50US: 200, figures: figures{ProxyCPUPerReqUS: f(90)}}, {ReqPerSec: 400, P50US: 320, figures: figures{ProxyCPUPerReqUS: f(70)}}},
			},
			path: pathBare,
			// Ratios 0.5, 0.45, 0.4; added p50 200, 150, 220.
			want: row{ReqPerSec: 500, P50US: 300, RatioVsDirect: 0.45, RatioMin: 0.4, RatioMax: 0.5, AddedP50US: 200, figures: figures{ProxyCPUPerReqUS: f(80)}},
		},
		{
			name: "even number of rounds takes the mean of the middle two",
			samples: map[rowKey][]sample{
				{pathDirect, 1}: {{ReqPerSec: 1000, P50US: 100}, {ReqPerSec: 1000, P50US: 100}},
				{pathFull, 1}:   {{ReqPerSec: 200, P50US: 1100, Errors: 2}, {ReqPerSec: 400, P50US: 900, Errors: 1}},
			},
			path: pathFull,
			want: row{ReqPerSec: 300, P50US: 1000, RatioVsDirect: 0.3, RatioMin: 0.2, RatioMax: 0.4, AddedP50US: 900, Errors: 3},
		},
		{
			name: "direct is its own base",
			samples: map[rowKey][]sample{
				{pathDirect, 1}: {{ReqPerSec: 1234, P50US: 80}},
			},
			path: pathDirect,
			want: row{ReqPerSec: 1234, P50US: 80, RatioVsDirect: 1, RatioMin: 1, RatioMax: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows := summarize(allPaths, []int{1}, tc.samples)
			var got *row
			for i := range rows {
				if rows[i].Path == tc.path {
					got = &rows[i]
				}
			}
			if got == nil {
				t.Fatalf("summarize: no row for %s in %+v", tc.path, rows)
			}
			show := func(r row) string {
				cpu := "nil"
				if r.ProxyCPUPerReqUS != nil {
					cpu = fmt.Sprintf("%.3g", *r.ProxyCPUPerReqUS)
				}
				return fmt.Sprintf("req/s %.4g p50 %.4g ratio %.3g [%.3g, %.3g] added %.4g errors %d cpu %s",
					r.ReqPerSec, r.P50US, r.RatioVsDirect, r.RatioMin, r.RatioMax, r.AddedP50US, r.Errors, cpu)
			}
			if show(*got) != show(tc.want) {
				t.Errorf("summarize %s:\n got %s\nwant %s", tc.path, show(*got), show(tc.want))
			}
		})
	}
}

func TestSummarizeOrdersByConcurrencyThenPath(t *testing.T) {
	samples := map[rowKey][]sample{}
	for _, c := range []int{64, 1} {
		for _, p := range []string{pathFull, pathDirect, pathBare} {
			samples[rowKey{p, c}] = []sample{{ReqPerSec: 1, P50US: 1}}
		}
	}
	rows := summarize([]string{pathDirect, pathBare, pathFull}, []int{1, 64}, samples)
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s/%d", r.Path, r.Concurrency))
	}
	want := "direct/1 bare/1 full/1 direct/64 bare/64 full/64"
	if strings.Join(got, " ") != want {
		t.Errorf("row order = %v, want %s", got, want)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP ztp_audit_records_total Audit records durably written.
# TYPE ztp_audit_records_total counter
ztp_audit_records_total 1234
ztp_policy_eval_seconds_bucket{le="5e-05"} 3
ztp_policy_eval_seconds_sum 0.125
ztp_policy_eval_seconds_count 500
ztp_decisions_total{decision="allow",method="/x/Y",upstream="backend"} 500
go_goroutines 42
`
	want := map[string]bool{"ztp_audit_records_total": true, "ztp_policy_eval_seconds_sum": true, "ztp_policy_eval_seconds_count": true, "ztp_audit_append_seconds_sum": true}
	got, err := parseMetrics(strings.NewReader(text), want)
	if err != nil {
		t.Fatalf("parseMetrics: %v", err)
	}
	if fmt.Sprint(got) != "map[ztp_audit_records_total:1234 ztp_policy_eval_seconds_count:500 ztp_policy_eval_seconds_sum:0.125]" {
		t.Errorf("parseMetrics = %v, want the three unlabelled samples asked for and present", got)
	}
	if _, err := parseMetrics(strings.NewReader("ztp_audit_records_total many\n"), want); err == nil {
		t.Errorf("parseMetrics of a non-number = nil error, want one")
	}
}

func TestThousands(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{{0, "0"}, {999.4, "999"}, {999.6, "1,000"}, {22000, "22,000"}, {1234567, "1,234,567"}} {
		if got := thousands(tc.in); got != tc.want {
			t.Errorf("thousands(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestQuantile(t *testing.T) {
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i))
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{name: "none", q: 0.5, want: 0},
		{name: "one", sorted: []time.Duration{7}, q: 0.99, want: 7},
		{name: "p50 of 1..100", sorted: hundred, q: 0.5, want: 50},
		{name: "p99 of 1..100", sorted: hundred, q: 0.99, want: 99},
		{name: "p100", sorted: hundred, q: 1, want: 100},
		{name: "p0 is the smallest", sorted: hundred, q: 0, want: 1},
	}
	for _, tc := range tests {
		if got := quantile(tc.sorted, tc.q); got != tc.want {
			t.Errorf("%s: quantile(%v) = %v, want %v", tc.name, tc.q, got, tc.want)
		}
	}
}

func TestFailures(t *testing.T) {
	tests := []struct {
		name    string
		rows    []row
		wantErr string // "" for none
	}{
		{name: "no rows", rows: nil},
		{name: "all calls succeeded", rows: []row{{Path: pathFull, Concurrency: 1, Rounds: []sample{{Round: 1}, {Round: 2}}}}},
		{
			name: "a failed round fails the run and names the first failure",
			rows: []row{
				{Path: pathDirect, Concurrency: 1, Rounds: []sample{{Round: 1}}},
				{Path: pathFull, Concurrency: 1, Rounds: []sample{{Round: 1}, {Round: 2, Errors: 3, FirstError: "rpc error: code = PermissionDenied"}}},
				{Path: pathFull, Concurrency: 16, Rounds: []sample{{Round: 1, Errors: 2, FirstError: "later"}}},
			},
			wantErr: "5 calls failed (first: full c=1 round 2: rpc error: code = PermissionDenied)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := failures(tc.rows)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("failures = %v, want nil", err)
			case tc.wantErr != "" && (!errors.Is(err, errCallsFailed) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("failures = %v, want errCallsFailed containing %q", err, tc.wantErr)
			}
		})
	}
}
