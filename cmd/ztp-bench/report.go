package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// report is the JSON the run writes; the table shows a selection of it.
// Latencies are in microseconds.
type report struct {
	Date     string            `json:"date"`
	Machine  machine           `json:"machine"`
	Settings settings          `json:"settings"`
	Paths    map[string]string `json:"paths"`
	Rows     []row             `json:"rows"`
	Floors   *floors           `json:"floors,omitempty"`
}

type machine struct {
	CPUs       int               `json:"cpus"`
	CPUModel   string            `json:"cpu_model"`
	GOMAXPROCS int               `json:"gomaxprocs"`
	GoVersion  string            `json:"go_version"` // of ztp-bench; make bench builds ztp-proxy with the same
	OS         string            `json:"os"`
	Kernel     string            `json:"kernel,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	// /proc/loadavg before the first process started and after the last row:
	// other work on the machine shows here (the run itself adds about 2).
	LoadAvgBefore string `json:"loadavg_before,omitempty"`
	LoadAvgAfter  string `json:"loadavg_after,omitempty"`
}

type settings struct {
	WarmupS      float64  `json:"warmup_s"`
	DurationS    float64  `json:"duration_s"`
	Rounds       int      `json:"rounds"`
	Concurrency  []int    `json:"concurrency"`
	Paths        []string `json:"paths"`
	PayloadBytes int      `json:"payload_bytes"`
	ElapsedS     float64  `json:"elapsed_s"`
}

// sample is one path at one concurrency in one round.
type sample struct {
	Round      int     `json:"round"`
	Calls      int     `json:"calls"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	ReqPerSec  float64 `json:"req_per_s"`
	P50US      float64 `json:"p50_us"`
	P90US      float64 `json:"p90_us"`
	P99US      float64 `json:"p99_us"`
	figures
}

// figures are the optional measurements of a window, each nil when it could
// not be taken.
type figures struct {
	// CPU time per call of each process (Linux only): the load generator, the
	// backend, and the proxy in between (none on the direct path).
	ClientCPUPerReqUS  *float64 `json:"client_cpu_per_req_us,omitempty"`
	BackendCPUPerReqUS *float64 `json:"backend_cpu_per_req_us,omitempty"`
	ProxyCPUPerReqUS   *float64 `json:"proxy_cpu_per_req_us,omitempty"`
	// The full proxy's own metrics over the window: mean policy evaluation and
	// audit append (group-commit wait included) per message, audit records
	// written per second, mean group commit and records per commit.
	PolicyEvalMeanUS   *float64 `json:"policy_eval_mean_us,omitempty"`
	AuditAppendMeanUS  *float64 `json:"audit_append_mean_us,omitempty"`
	AuditRecordsPerSec *float64 `json:"audit_records_per_s,omitempty"`
	CommitMeanUS       *float64 `json:"audit_commit_mean_us,omitempty"`
	RecordsPerCommit   *float64 `json:"audit_records_per_commit,omitempty"`
}

// fields lists f's measurements, for taking the median of each.
func (f *figures) fields() []**float64 {
	return []**float64{&f.ClientCPUPerReqUS, &f.BackendCPUPerReqUS, &f.ProxyCPUPerReqUS,
		&f.PolicyEvalMeanUS, &f.AuditAppendMeanUS, &f.AuditRecordsPerSec, &f.CommitMeanUS, &f.RecordsPerCommit}
}

// row is one path at one concurrency: medians over the rounds. The ratio and
// the added latency pair each round with the direct path of the same round
// before taking the median, so that drift between rounds cancels out.
type row struct {
	Path          string  `json:"path"`
	Concurrency   int     `json:"concurrency"`
	ReqPerSec     float64 `json:"req_per_s"`
	P50US         float64 `json:"p50_us"`
	P99US         float64 `json:"p99_us"`
	RatioVsDirect float64 `json:"ratio_vs_direct"`
	RatioMin      float64 `json:"ratio_min"`
	RatioMax      float64 `json:"ratio_max"`
	AddedP50US    float64 `json:"added_p50_us"`

	figures // medians over the rounds that have them

	Errors int      `json:"errors"`
	Rounds []sample `json:"rounds"`
}

// summarize turns the samples into rows, ordered by concurrency, then path.
func summarize(paths []string, concurrency []int, samples map[rowKey][]sample) []row {
	var rows []row
	for _, c := range concurrency {
		direct := samples[rowKey{pathDirect, c}]
		for _, p := range paths {
			ss := samples[rowKey{p, c}]
			if len(ss) == 0 {
				continue
			}
			r := row{Path: p, Concurrency: c, Rounds: ss}
			var ratios, added []float64
			for i, s := range ss {
				r.Errors += s.Errors
				if i < len(direct) && direct[i].ReqPerSec > 0 {
					ratios = append(ratios, s.ReqPerSec/direct[i].ReqPerSec)
					added = append(added, s.P50US-direct[i].P50US)
				}
			}
			r.ReqPerSec = median(ss, func(s sample) float64 { return s.ReqPerSec })
			r.P50US = median(ss, func(s sample) float64 { return s.P50US })
			r.P99US = median(ss, func(s sample) float64 { return s.P99US })
			if len(ratios) > 0 {
				r.RatioVsDirect = median(ratios, func(v float64) float64 { return v })
				r.RatioMin, r.RatioMax = slices.Min(ratios), slices.Max(ratios)
				r.AddedP50US = median(added, func(v float64) float64 { return v })
			}
			for i, dst := range r.fields() {
				*dst = medianOpt(ss, func(s sample) *float64 { return *s.fields()[i] })
			}
			rows = append(rows, r)
		}
	}
	return rows
}

// median of f over xs (the mean of the middle two for an even count); 0 for none.
func median[T any](xs []T, f func(T) float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// medianOpt is the median of the values f has, nil when no sample has one.
func medianOpt(ss []sample, f func(sample) *float64) *float64 {
	var v []float64
	for _, s := range ss {
		if p := f(s); p != nil {
			v = append(v, *p)
		}
	}
	if len(v) == 0 {
		return nil
	}
	m := median(v, func(x float64) float64 { return x })
	return &m
}

// writeTable prints the report as Markdown, ready for the README.
func writeTable(w io.Writer, rep *report) error {
	var b strings.Builder
	m, s := rep.Machine, rep.Settings
	fmt.Fprintf(&b, "ztp-bench %s: %d CPUs (%s), GOMAXPROCS %d, %s %s", rep.Date, m.CPUs, m.CPUModel, m.GOMAXPROCS, m.GoVersion, m.OS)
	if len(m.Env) > 0 {
		keys := make([]string, 0, len(m.Env))
		for k := range m.Env {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, ", %s=%s", k, m.Env[k])
		}
	}
	if m.LoadAvgBefore != "" {
		fmt.Fprintf(&b, "; load average %s before, %s after", m.LoadAvgBefore, m.LoadAvgAfter)
	}
	fmt.Fprintf(&b, ".\nUnary calls with a %d-byte payload from a fixed number of workers (c); per row %gs warm-up, then %gs measured; "+
		"%d rounds with the paths interleaved; medians over rounds. Load generator, proxy and backend share the CPUs.\n\n",
		s.PayloadBytes, s.WarmupS, s.DurationS, s.Rounds)

	b.WriteString("| path | c | req/s | p50 | p99 | × direct | added p50 | proxy CPU/call |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rep.Rows {
		ratio, added, cpu := "1", "—", "—"
		if r.Path != pathDirect {
			ratio = fmt.Sprintf("%.2f", r.RatioVsDirect)
			if len(r.Rounds) > 1 {
				ratio += fmt.Sprintf(" (%.2f–%.2f)", r.RatioMin, r.RatioMax)
			}
			added = fmt.Sprintf("%+.2f ms", r.AddedP50US/1000)
			if r.ProxyCPUPerReqUS != nil {
				cpu = fmt.Sprintf("%.0f µs", *r.ProxyCPUPerReqUS)
			}
		}
		errs := ""
		if r.Errors > 0 {
			errs = fmt.Sprintf(" (%d errors)", r.Errors)
		}
		fmt.Fprintf(&b, "| %s%s | %d | %s | %.2f ms | %.2f ms | %s | %s | %s |\n",
			r.Path, errs, r.Concurrency, thousands(r.ReqPerSec), r.P50US/1000, r.P99US/1000, ratio, added, cpu)
	}
	b.WriteString("\nPaths:\n")
	for _, p := range s.Paths {
		fmt.Fprintf(&b, "- %s: %s.\n", p, rep.Paths[p])
	}

	var inside []row
	for _, r := range rep.Rows {
		if r.Path == pathFull && r.PolicyEvalMeanUS != nil {
			inside = append(inside, r)
		}
	}
	if len(inside) > 0 {
		b.WriteString("\nInside the full proxy (its own histograms over the measured window, mean per message):\n\n")
		b.WriteString("| c | policy eval | audit append (incl. group-commit wait) | audit records/s | group commit | records per commit |\n")
		b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, r := range inside {
			perCommit := "—"
			if r.RecordsPerCommit != nil {
				perCommit = fmt.Sprintf("%.1f", *r.RecordsPerCommit)
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s |\n", r.Concurrency, optUS(r.PolicyEvalMeanUS), optUS(r.AuditAppendMeanUS),
				optThousands(r.AuditRecordsPerSec), optUS(r.CommitMeanUS), perCommit)
		}
	}
	if f := rep.Floors; f != nil {
		fmt.Fprintf(&b, "\nDurability floor on the audit directory's filesystem (%s), p50 (p99) of %d: "+
			"4 KiB write + fdatasync %.0f µs (%.0f); bbolt commit %.0f µs (%.0f); audit.Append by a lone caller %.0f µs (%.0f).\n",
			f.Filesystem, f.Samples, f.FdatasyncP50US, f.FdatasyncP99US, f.BboltCommitP50US, f.BboltCommitP99US, f.AuditAppendP50US, f.AuditAppendP99US)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// thousands formats v rounded, with commas between groups of three digits.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	var b strings.Builder
	for i, d := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	return b.String()
}

func optUS(v *float64) string {
	if v == nil {
		return "—"
	}
	return fmt.Sprintf("%.0f µs", *v)
}

func optThousands(v *float64) string {
	if v == nil {
		return "—"
	}
	return thousands(*v)
}
