package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// What each path is, for the report.
var pathDescriptions = map[string]string{
	pathDirect:   "the backend called directly, plaintext",
	pathBare:     "proxy.NewBareForwarder in its own process, plaintext: forwarding only, no TLS, policy, rate limit or audit",
	pathBareMTLS: "the same bare forwarder behind the proxy's mTLS listener",
	pathFull:     "the ztp-proxy binary: mTLS, decode (protoset), OPA policy (testdata/policies/bench.rego), rate limit that never triggers, break-glass check, durable audit (request and outcome records), info log line per decision, forward",
}

// target is one path's client and the process serving it.
type target struct {
	path    string
	conn    *grpc.ClientConn
	client  testgrpc.TestServiceClient
	proxy   *child // the proxy in between; nil for direct
	metrics string // the full proxy's metrics address; "" for the others
}

// run measures every path, prints the table to out and progress to progress,
// and writes the JSON report when asked. It returns an error, with the report
// when there is one, if any call failed: such figures are not a measurement.
func run(ctx context.Context, o options, out, progress io.Writer) (_ *report, err error) {
	started := time.Now()
	loadBefore := loadAvg()
	dir, err := os.MkdirTemp(o.dir, "ztp-bench-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		defer fmt.Fprintf(progress, "work directory kept: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	var children []*child
	defer func() {
		// Proxies first, so that the full proxy drains with its upstream still there.
		for i := len(children) - 1; i >= 0; i-- {
			if serr := children[i].stop(); serr != nil && err == nil {
				err = serr
			}
		}
	}()
	backend, err := startRole(ctx, dir, "backend", roleBackend)
	if err != nil {
		return nil, err
	}
	children = append(children, backend)

	auditDir := dir
	var files *benchTLS
	if slices.Contains(o.paths, pathBareMTLS) || slices.Contains(o.paths, pathFull) {
		auditDir = filepath.Join(dir, "proxy")
		if files, err = writeProxyDir(auditDir, backend.addr); err != nil {
			return nil, err
		}
	}
	var targets []*target
	defer func() {
		for _, t := range targets {
			t.conn.Close()
		}
	}()
	for _, p := range o.paths {
		t, err := startPath(ctx, p, o.proxyBin, dir, auditDir, backend, files)
		if t != nil && t.proxy != nil {
			children = append(children, t.proxy)
		}
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	payload := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte(strings.Repeat("b", o.payload))}}
	for _, t := range targets {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := t.client.UnaryCall(cctx, payload)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: first call: %w", t.path, err)
		}
	}

	rep := &report{
		Date:    started.UTC().Format(time.RFC3339),
		Machine: thisMachine(loadBefore),
		Settings: settings{
			WarmupS: o.warmup.Seconds(), DurationS: o.duration.Seconds(), Rounds: o.rounds,
			Concurrency: o.concurrency, Paths: o.paths, PayloadBytes: o.payload,
		},
		Paths: map[string]string{},
	}
	for _, p := range o.paths {
		rep.Paths[p] = pathDescriptions[p]
	}
	if o.floorSamples > 0 {
		fmt.Fprintf(progress, "durability floor: %d samples each in %s\n", o.floorSamples, auditDir)
		if rep.Floors, err = measureFloors(ctx, auditDir, o.floorSamples); err != nil {
			return nil, err
		}
	}

	samples := map[rowKey][]sample{}
	for r := range o.rounds {
		for _, c := range o.concurrency {
			for _, t := range targets {
				profile := ""
				if t.metrics != "" && r == o.rounds-1 && c == slices.Max(o.concurrency) {
					profile = o.cpuProfile
				}
				s, err := measure(ctx, t, backend, payload, c, o, profile)
				if err != nil {
					return nil, err
				}
				s.Round = r + 1
				samples[rowKey{t.path, c}] = append(samples[rowKey{t.path, c}], s)
				fmt.Fprintf(progress, "round %d/%d c=%-3d %-9s %8.0f req/s  p50 %7.0f µs  p99 %7.0f µs  errors %d\n",
					r+1, o.rounds, c, t.path, s.ReqPerSec, s.P50US, s.P99US, s.Errors)
			}
		}
	}
	rep.Rows = summarize(o.paths, o.concurrency, samples)
	rep.Settings.ElapsedS = time.Since(started).Seconds()
	rep.Machine.LoadAvgAfter = loadAvg()

	if err := writeTable(out, rep); err != nil {
		return nil, err
	}
	if o.jsonFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(o.jsonFile, append(b, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	if err := failures(rep.Rows); err != nil {
		return rep, err
	}
	return rep, nil
}

// failures reports the calls that failed in any round: a row with failed
// calls measured something other than the path it names.
func failures(rows []row) error {
	failed := 0
	var first string
	for _, r := range rows {
		for _, s := range r.Rounds {
			if s.Errors > 0 && first == "" {
				first = fmt.Sprintf("%s c=%d round %d: %s", r.Path, r.Concurrency, s.Round, s.FirstError)
			}
			failed += s.Errors
		}
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d calls failed (first: %s)", errCallsFailed, failed, first)
	}
	return nil
}

// startPath starts the proxy of path, if it has one, and connects a client to
// it. The target it returns, even with an error, holds the process to stop.
func startPath(ctx context.Context, path, proxyBin, dir, auditDir string, backend *child, files *benchTLS) (*target, error) {
	t := &target{path: path}
	creds := insecure.NewCredentials()
	var err error
	switch path {
	case pathDirect:
	case pathBare:
		t.proxy, err = startRole(ctx, dir, path, roleBare, "-upstream", backend.addr)
	case pathBareMTLS:
		t.proxy, err = startRole(ctx, dir, path, roleBare, "-upstream", backend.addr, "-cert", files.cert, "-key", files.key, "-client-ca", files.ca)
		creds = grpccreds.NewTLS(files.client)
	case pathFull:
		t.proxy, t.metrics, err = startProxy(ctx, proxyBin, auditDir)
		creds = grpccreds.NewTLS(files.client)
	default:
		err = fmt.Errorf("unknown path %q", path)
	}
	if err != nil {
		return t, err
	}
	addr := backend.addr
	if t.proxy != nil {
		addr = t.proxy.addr
	}
	if t.conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(creds)); err != nil {
		return t, err
	}
	t.client = testgrpc.NewTestServiceClient(t.conn)
	return t, nil
}

type rowKey struct {
	path string
	c    int
}

// measure runs one row: warm-up, then the measured window, with the CPU time
// of every process and, for the full proxy, its own histograms read at both
// ends of the window. With profile set, the full proxy's CPU profile over the
// window is written there.
func measure(ctx context.Context, t *target, backend *child, req *testgrpc.SimpleRequest, workers int, o options, profile string) (sample, error) {
	from := time.Now().Add(o.warmup)
	end := from.Add(o.duration)
	done := make(chan window, 1)
	go func() { done <- generate(ctx, t.client, req, workers, from, end) }()

	wait := func(until time.Time) error {
		tm := time.NewTimer(time.Until(until))
		defer tm.Stop()
		select {
		case <-tm.C:
			return nil
		case <-ctx.Done():
			<-done
			return ctx.Err()
		}
	}
	if err := wait(from); err != nil {
		return sample{}, err
	}
	before := snapshot(ctx, t, backend)
	profiled := make(chan error, 1)
	if profile != "" {
		go func() { profiled <- cpuProfile(ctx, t.metrics, o.duration, profile) }()
	} else {
		profiled <- nil
	}
	if err := wait(end); err != nil {
		return sample{}, err
	}
	after := snapshot(ctx, t, backend)
	w := <-done
	if err := <-profiled; err != nil {
		return sample{}, fmt.Errorf("cpu profile: %w", err)
	}

	s := sample{
		Calls:     w.calls,
		Errors:    w.errors,
		ReqPerSec: float64(w.calls) / o.duration.Seconds(),
		P50US:     us(quantile(w.lat, 0.50)),
		P90US:     us(quantile(w.lat, 0.90)),
		P99US:     us(quantile(w.lat, 0.99)),
	}
	if w.firstErr != nil {
		s.FirstError = w.firstErr.Error()
	}
	// CPU per call: CPU used between the snapshots over the calls served in
	// that time at the measured rate.
	span := after.at.Sub(before.at).Seconds()
	perCall := func(a, b time.Duration, ok bool) *float64 {
		if !ok || s.ReqPerSec == 0 || span <= 0 {
			return nil
		}
		v := us(b-a) / (s.ReqPerSec * span)
		return &v
	}
	s.ClientCPUPerReqUS = perCall(before.client, after.client, before.clientOK && after.clientOK)
	s.BackendCPUPerReqUS = perCall(before.backend, after.backend, before.backendOK && after.backendOK)
	if t.proxy != nil {
		s.ProxyCPUPerReqUS = perCall(before.proxy, after.proxy, before.proxyOK && after.proxyOK)
	}
	if t.metrics != "" && before.metrics != nil && after.metrics != nil {
		mean := func(name string) *float64 {
			n := after.metrics[name+"_count"] - before.metrics[name+"_count"]
			if n <= 0 {
				return nil
			}
			v := (after.metrics[name+"_sum"] - before.metrics[name+"_sum"]) / n * 1e6
			return &v
		}
		s.PolicyEvalMeanUS = mean("ztp_policy_eval_seconds")
		s.AuditAppendMeanUS = mean("ztp_audit_append_seconds")
		s.CommitMeanUS = mean("ztp_audit_commit_seconds")
		if n := after.metrics["ztp_audit_commit_records_count"] - before.metrics["ztp_audit_commit_records_count"]; n > 0 {
			v := (after.metrics["ztp_audit_commit_records_sum"] - before.metrics["ztp_audit_commit_records_sum"]) / n
			s.RecordsPerCommit = &v
		}
		if span > 0 {
			v := (after.metrics["ztp_audit_records_total"] - before.metrics["ztp_audit_records_total"]) / span
			s.AuditRecordsPerSec = &v
		}
	}
	return s, nil
}

// point is the state of the processes at one end of a measured window.
type point struct {
	at                           time.Time
	client, backend, proxy       time.Duration
	clientOK, backendOK, proxyOK bool
	metrics                      map[string]float64 // the full proxy's, else nil
}

func snapshot(ctx context.Context, t *target, backend *child) point {
	p := point{at: time.Now()}
	var err error
	p.client, err = selfCPU()
	p.clientOK = err == nil
	p.backend, err = processCPU(backend.cmd.Process.Pid)
	p.backendOK = err == nil
	if t.proxy != nil {
		p.proxy, err = processCPU(t.proxy.cmd.Process.Pid)
		p.proxyOK = err == nil
	}
	if t.metrics != "" {
		p.metrics, _ = scrape(ctx, t.metrics)
	}
	return p
}

// scrapedMetrics are the proxy's own figures the report shows.
var scrapedMetrics = map[string]bool{
	"ztp_policy_eval_seconds_sum": true, "ztp_policy_eval_seconds_count": true,
	"ztp_audit_append_seconds_sum": true, "ztp_audit_append_seconds_count": true,
	"ztp_audit_records_total":      true,
	"ztp_audit_commit_seconds_sum": true, "ztp_audit_commit_seconds_count": true,
	"ztp_audit_commit_records_sum": true, "ztp_audit_commit_records_count": true,
}

// scrape reads the unlabelled samples in scrapedMetrics from the proxy's
// Prometheus text endpoint.
func scrape(ctx context.Context, addr string) (map[string]float64, error) {
	body, err := httpGet(ctx, "http://"+addr+"/metrics")
	if err != nil {
		return nil, err
	}
	return parseMetrics(strings.NewReader(body), scrapedMetrics)
}

// parseMetrics returns the value of each unlabelled sample named in want.
func parseMetrics(r io.Reader, want map[string]bool) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("metric %s: %w", name, err)
		}
		out[name] = v
	}
	return out, sc.Err()
}

// readyz returns nil once the proxy's /readyz answers 200.
func readyz(ctx context.Context, addr string) error {
	_, err := httpGet(ctx, "http://"+addr+"/readyz")
	return err
}

// cpuProfile writes the profile the proxy's /debug/pprof/profile takes over d
// (whole seconds, at least one) to file.
func cpuProfile(ctx context.Context, addr string, d time.Duration, file string) error {
	secs := max(int(d.Seconds()), 1)
	body, err := httpGetWithin(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), time.Duration(secs)*time.Second+10*time.Second)
	if err != nil {
		return err
	}
	return os.WriteFile(file, []byte(body), 0o644)
}

func httpGet(ctx context.Context, url string) (string, error) {
	return httpGetWithin(ctx, url, 5*time.Second)
}

// httpGetWithin returns the body of a 200 answer to GET url, waiting at most timeout.
func httpGetWithin(ctx context.Context, url string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Close = true // no idle connection outlives the run
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(url + ": " + resp.Status + ": " + strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// thisMachine describes where the run happened.
func thisMachine(loadBefore string) machine {
	m := machine{
		LoadAvgBefore: loadBefore,
		CPUs:          runtime.NumCPU(),
		GOMAXPROCS:    runtime.GOMAXPROCS(0),
		GoVersion:     runtime.Version(),
		OS:            runtime.GOOS + "/" + runtime.GOARCH,
		CPUModel:      "unknown",
		Env:           map[string]string{},
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	// Settings every process of the run inherits and that change the figures.
	for _, k := range []string{"GOGC", "GOMAXPROCS", "GOMEMLIMIT", "GODEBUG"} {
		if v, ok := os.LookupEnv(k); ok {
			m.Env[k] = v
		}
	}
	return m
}

// loadAvg is the first three fields of /proc/loadavg; "" where there is none.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
