package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/decode"
	"github.com/ztp-dev/ztp/policy"
)

func newPolicyCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Test, evaluate and replay ztp policies; show the running proxy's version",
		Long: `Work on Rego policies offline, as the proxy would load them (same capabilities,
same helper library, strict built-in errors), and ask the running proxy which
policy version is active.`,
	}
	cmd.AddCommand(
		newPolicyTestCommand(g),
		newPolicyEvalCommand(g),
		newPolicyInputCommand(g),
		newPolicyReplayCommand(g),
		newPolicyLibCommand(),
		newPolicyVersionCommand(g),
	)
	return cmd
}

func newPolicyVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the policy version active in the running proxy",
		Example: `  ztpctl --server proxy:7443 --cacert ca.pem --cert me.pem --key me-key.pem policy version
  ztpctl policy version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := callProxy(cmd, g, "policy version", func(ctx context.Context, conn *grpc.ClientConn) (*ztpv1.PolicyVersionResponse, error) {
				return ztpv1.NewPolicyClient(conn).Version(ctx, &ztpv1.PolicyVersionRequest{})
			})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), map[string]any{
					"version": v.GetVersion(), "mode": v.GetMode(), "loaded": v.GetLoaded().AsTime(),
				})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s (mode %s, loaded %s)\n", v.GetVersion(), v.GetMode(), v.GetLoaded().AsTime().Format("2006-01-02T15:04:05Z07:00"))
			return nil
		},
	}
}

// policyCmdContext is the command's context, or a background one when run without.
func policyCmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// ---- policy test ----------------------------------------------------------------------

type policyTestOptions struct {
	format    string
	coverage  bool
	threshold float64
	verbose   bool
	filter    string
	timeout   time.Duration
	config    string
}

func newPolicyTestCommand(g *globalOptions) *cobra.Command {
	o := &policyTestOptions{}
	cmd := &cobra.Command{
		Use:   "test [PATH]...",
		Short: "Run the test_ rules of *_test.rego files",
		Long: `Run the test_ rules in *_test.rego files under PATH (files or directories, default
the current directory) with OPA's tester, on the policy and data files the proxy
would load, with the proxy's capabilities (no http.send, net.lookup_ip_addr or
opa.runtime) and with built-in errors raised. When the files hold package ztp, the
decision query the proxy prepares is built too.

Exit status is non-zero on a compile error (reported as file:line:col), on any
failing or erroring test, when no test was found, and when --threshold is given and
the line coverage of the policy files (test files and the shipped helper library
excluded) is below it.`,
		Example: `  ztpctl policy test policies/
  ztpctl policy test -v --run human policies/
  ztpctl policy test --coverage --threshold 90 policies/
  ztpctl policy test --format junit policies/ > policy-tests.xml`,
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, g, args) },
	}
	f := cmd.Flags()
	enumFlag(f, &o.format, "format", "", "", []string{"text", "json", "junit"}, "report format (default text, or json with --output json)")
	f.BoolVar(&o.coverage, "coverage", false, "report line coverage of the policy files")
	f.Float64Var(&o.threshold, "threshold", 0, "fail when coverage is below this percentage (implies --coverage)")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "list every test, not only those that did not pass, with their print() output")
	f.StringVar(&o.filter, "run", "", "run only tests whose name matches this regular expression")
	f.DurationVar(&o.timeout, "test-timeout", 5*time.Second, "timeout of one test")
	configFlag(f, &o.config)
	return cmd
}

func (o *policyTestOptions) run(cmd *cobra.Command, g *globalOptions, paths []string) error {
	format := o.format
	if format == "" {
		format = g.output
	}
	if o.threshold < 0 || o.threshold > 100 {
		return usageError(fmt.Errorf("--threshold must be a percentage between 0 and 100, got %v", o.threshold))
	}
	if len(paths) == 0 {
		paths = []string{"."}
	}
	data, err := configData(o.config)
	if err != nil {
		return err
	}
	rep, err := policy.RunTests(policyCmdContext(cmd), policy.TestOptions{
		Paths:    paths,
		Run:      o.filter,
		Coverage: o.coverage || o.threshold > 0,
		Timeout:  o.timeout,
		Config:   data,
	})
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	switch format {
	case "json":
		err = printJSON(w, testJSON(rep, o.threshold))
	case "junit":
		err = writeJUnit(w, rep)
	default:
		writeTestText(w, rep, o.verbose, o.threshold)
	}
	if err != nil {
		return err
	}

	if len(rep.Results) == 0 {
		return fmt.Errorf("no test_ rules found in %s", strings.Join(paths, ", "))
	}
	if bad := rep.Count(policy.TestFail) + rep.Count(policy.TestError); bad > 0 {
		return fmt.Errorf("%d of %d tests did not pass", bad, len(rep.Results))
	}
	if c := rep.Coverage; c != nil && o.threshold > 0 && c.Percent < o.threshold {
		return fmt.Errorf("coverage %.1f%% is below --threshold %g%%", c.Percent, o.threshold)
	}
	return nil
}

func writeTestText(w io.Writer, rep *policy.TestReport, verbose bool, threshold float64) {
	for _, r := range rep.Results {
		if r.Outcome == policy.TestPass && !verbose {
			continue
		}
		fmt.Fprintf(w, "%-5s %s: %s.%s (%s)", strings.ToUpper(r.Outcome), r.Location(), r.Package, r.Name, r.Duration.Round(time.Microsecond))
		if r.Detail != "" {
			fmt.Fprintf(w, ": %s", r.Detail)
		}
		fmt.Fprintln(w)
		if r.Output != "" && (verbose || r.Outcome != policy.TestPass) {
			for _, line := range strings.Split(strings.TrimRight(r.Output, "\n"), "\n") {
				fmt.Fprintf(w, "      %s\n", line)
			}
		}
	}
	if len(rep.Results) > 0 {
		fmt.Fprintln(w, strings.Repeat("-", 80))
	}
	fmt.Fprintf(w, "PASS: %d/%d", rep.Count(policy.TestPass), len(rep.Results))
	for _, o := range []string{policy.TestFail, policy.TestError, policy.TestSkip} {
		if n := rep.Count(o); n > 0 {
			fmt.Fprintf(w, "  %s: %d", strings.ToUpper(o), n)
		}
	}
	fmt.Fprintln(w)
	if c := rep.Coverage; c != nil {
		fmt.Fprintf(w, "coverage: %.1f%% of %d lines", c.Percent, c.Covered+c.NotCovered)
		if threshold > 0 {
			fmt.Fprintf(w, " (threshold %g%%)", threshold)
		}
		fmt.Fprintln(w)
		for _, f := range c.Files {
			fmt.Fprintf(w, "  %s: %.1f%%", f.File, f.Percent)
			if len(f.Missed) > 0 {
				fmt.Fprintf(w, ", not covered: %s", rowRanges(f.Missed))
			}
			fmt.Fprintln(w)
		}
	}
}

func rowRanges(rs [][2]int) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		if r[0] == r[1] {
			parts[i] = fmt.Sprint(r[0])
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r[0], r[1])
		}
	}
	return strings.Join(parts, ", ")
}

type testResultJSON struct {
	Package    string  `json:"package"`
	Name       string  `json:"name"`
	Location   string  `json:"location"`
	File       string  `json:"file"`
	Row        int     `json:"row"`
	Col        int     `json:"col"`
	Outcome    string  `json:"outcome"`
	DurationMS float64 `json:"duration_ms"`
	Detail     string  `json:"detail,omitempty"`
	Output     string  `json:"output,omitempty"`
}

type testFileCoverageJSON struct {
	File            string   `json:"file"`
	Percent         float64  `json:"percent"`
	CoveredLines    int      `json:"covered_lines"`
	NotCoveredLines int      `json:"not_covered_lines"`
	NotCovered      [][2]int `json:"not_covered"`
}

type testCoverageJSON struct {
	Percent         float64                `json:"percent"`
	Threshold       float64                `json:"threshold,omitempty"`
	CoveredLines    int                    `json:"covered_lines"`
	NotCoveredLines int                    `json:"not_covered_lines"`
	Files           []testFileCoverageJSON `json:"files"`
}

type testReportJSON struct {
	Tests   []testResultJSON `json:"tests"`
	Summary map[string]int   `json:"summary"`
	// Coverage is present with --coverage or --threshold.
	Coverage *testCoverageJSON `json:"coverage,omitempty"`
}

func testJSON(rep *policy.TestReport, threshold float64) testReportJSON {
	out := testReportJSON{Tests: []testResultJSON{}, Summary: map[string]int{"total": len(rep.Results)}}
	for _, o := range []string{policy.TestPass, policy.TestFail, policy.TestError, policy.TestSkip} {
		out.Summary[o] = rep.Count(o)
	}
	for _, r := range rep.Results {
		out.Tests = append(out.Tests, testResultJSON{
			Package: r.Package, Name: r.Name, Location: r.Location(), File: r.File, Row: r.Row, Col: r.Col,
			Outcome: r.Outcome, DurationMS: float64(r.Duration.Microseconds()) / 1000, Detail: r.Detail, Output: r.Output,
		})
	}
	if c := rep.Coverage; c != nil {
		out.Coverage = &testCoverageJSON{Percent: c.Percent, Threshold: threshold, CoveredLines: c.Covered, NotCoveredLines: c.NotCovered, Files: []testFileCoverageJSON{}}
		for _, f := range c.Files {
			missed := f.Missed
			if missed == nil {
				missed = [][2]int{}
			}
			out.Coverage.Files = append(out.Coverage.Files, testFileCoverageJSON{
				File: f.File, Percent: f.Percent, CoveredLines: f.Covered, NotCoveredLines: f.NotCovered, NotCovered: missed,
			})
		}
	}
	return out
}

// JUnit XML, as CI systems (GitLab, Jenkins, GitHub test reporters) read it: one suite per
// Rego package.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr"`
	Line      int           `xml:"line,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *struct{}     `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

func junitSeconds(d time.Duration) string { return fmt.Sprintf("%.6f", d.Seconds()) }

func writeJUnit(w io.Writer, rep *policy.TestReport) error {
	root := junitSuites{Name: "ztpctl policy test"}
	var total time.Duration
	index := map[string]int{}
	suiteTime := map[string]time.Duration{}
	for _, r := range rep.Results {
		i, ok := index[r.Package]
		if !ok {
			i = len(root.Suites)
			index[r.Package] = i
			root.Suites = append(root.Suites, junitSuite{Name: r.Package})
		}
		s := &root.Suites[i]
		c := junitCase{Name: r.Name, Classname: r.Package, File: r.File, Line: r.Row, Time: junitSeconds(r.Duration), SystemOut: r.Output}
		switch r.Outcome {
		case policy.TestFail:
			msg := "test failed: " + r.Location()
			c.Failure = &junitProblem{Message: msg, Type: "fail", Text: strings.TrimSpace(msg + "\n" + r.Detail)}
			s.Failures++
			root.Failures++
		case policy.TestError:
			c.Error = &junitProblem{Message: r.Detail, Type: "error", Text: r.Location() + ": " + r.Detail}
			s.Errors++
			root.Errors++
		case policy.TestSkip:
			c.Skipped = &struct{}{}
			s.Skipped++
			root.Skipped++
		}
		s.Tests++
		root.Tests++
		s.Cases = append(s.Cases, c)
		suiteTime[r.Package] += r.Duration
		total += r.Duration
	}
	for i := range root.Suites {
		root.Suites[i].Time = junitSeconds(suiteTime[root.Suites[i].Name])
	}
	root.Time = junitSeconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(root); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// ---- policy eval ----------------------------------------------------------------------

type policyEvalOptions struct {
	policies   []string
	input      string
	breakglass string
	mode       string
	explain    string
	config     string
	answers    string
	failOn     string
}

// Values of policy eval --fail-on.
const (
	evalFailOnDeny = "deny" // the verdict refuses the call (deny, error)
	evalFailOnAny  = "any"  // the verdict is anything but allow (dryrun_deny too)
)

// failure is the integrity error --fail-on makes of verdict v, or nil.
func (o *policyEvalOptions) failure(v policy.Verdict) error {
	if (o.failOn == evalFailOnDeny && !v.Forward()) || (o.failOn == evalFailOnAny && v.Decision != policy.DecisionAllow) {
		return integrityError(fmt.Errorf("policy eval: verdict %s (--fail-on %s)", v.Decision, o.failOn))
	}
	return nil
}

func newPolicyEvalCommand(g *globalOptions) *cobra.Command {
	o := &policyEvalOptions{}
	cmd := &cobra.Command{
		Use:   "eval --policy DIR --input FILE|-",
		Short: "Show the full decision for one input document",
		Long: `Evaluate one policy input document (the "input" of the policy contract, as JSON)
and print what each decision rule says (allow, deny, forbid, budgets), the verdict the
proxy would reach and why. The input is used as given: fields it lacks are undefined
for the policy, as they would never be in the proxy. --breakglass simulates an active
grant whose scope covers the method: it sets input.breakglass and lets the grant
override deny (never forbid).

--explain adds the value of every rule of package ztp for this input (intermediate
rules included: which ones fired, and what they computed); --explain=notes|fails|full
also prints OPA's evaluation trace at that level, as 'opa eval --explain' does.

An audit record (a line of 'ztpctl audit export -o jsonl') given as the input is
turned into the input the proxy evaluated for it, as 'policy replay' does, with a note
on standard error. An input that lacks fields the proxy always sets gets a warning
naming them: rules reading them are undefined, which usually reads as "not allowed".
'ztpctl policy input' builds a complete input from a request.

A policy's effect queries (ztp.query) are answered from --answers, a JSON array of
{"method", "request", "answer"} objects (the "queries" of an audit record will do), or
from the queries of the audit record given as the input; a query they do not answer
fails the evaluation, as it would in the proxy with an upstream that cannot be asked.

The exit status is 0 whatever the verdict, unless --fail-on is given: then it is 3
when the verdict refuses the call (--fail-on deny: deny, error) or is anything but
allow (--fail-on any: dryrun_deny too). It is 1 when the policy does not load or the
input cannot be read.`,
		Example: `  ztpctl policy eval --policy policies/ --input put.json
  echo '{"principal":{"id":"spiffe://example.org/user/alice","kind":"human","groups":["sre"]},
         "method":"/etcdserverpb.KV/Put","rpc":"Put","request":{"key":"Zm9v"},"request_decoded":true}' |
    ztpctl policy eval --policy policies/ --input - --breakglass bg-42 -o json
  ztpctl audit export --db audit.db --seq 1234 -o jsonl | ztpctl policy eval --policy policies/ --input - --explain=fails`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd, g) },
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.policies, "policy", nil, "policy file or directory (repeatable)")
	configFlag(f, &o.config)
	f.StringVar(&o.input, "input", "", `input document (JSON), "-" for standard input`)
	f.StringVar(&o.breakglass, "breakglass", "", "simulate an active break-glass grant with this id")
	enumFlag(f, &o.mode, "mode", "", string(policy.Enforce), []string{string(policy.Enforce), string(policy.DryRun)}, "policy mode")
	enumFlag(f, &o.explain, "explain", "", "", append([]string{explainRules}, policy.ExplainLevels...), "show every rule's value; =notes|fails|full adds OPA's trace at that level")
	f.Lookup("explain").NoOptDefVal = explainRules
	enumFlag(f, &o.failOn, "fail-on", "", "", []string{evalFailOnDeny, evalFailOnAny}, "exit 3 when the verdict is not allow")
	f.StringVar(&o.answers, "answers", "", `answers to the policy's effect queries (JSON array of {"method", "request", "answer"})`)
	cmd.MarkFlagRequired("policy")
	cmd.MarkFlagRequired("input")
	return cmd
}

type evalJSON struct {
	Verdict        string             `json:"verdict"`
	Forward        bool               `json:"forward"`
	Reasons        []string           `json:"reasons"`
	Why            string             `json:"why"`
	StatusMessage  string             `json:"status_message,omitempty"`
	Allow          bool               `json:"allow"`
	AllowUndefined bool               `json:"allow_undefined"`
	Deny           []string           `json:"deny"`
	Forbid         []string           `json:"forbid"`
	Budgets        []policy.Budget    `json:"budgets"`
	Error          string             `json:"error,omitempty"`
	Grant          string             `json:"breakglass_grant,omitempty"`
	Mode           string             `json:"mode"`
	Version        string             `json:"policy_version"`
	Warnings       []string           `json:"warnings,omitempty"`
	Rules          []policy.RuleValue `json:"rules,omitempty"` // --explain
	Trace          string             `json:"trace,omitempty"` // --explain=notes|fails|full
}

// explainRules is --explain without a level: rule values, no trace.
const explainRules = "rules"

func (o *policyEvalOptions) run(cmd *cobra.Command, g *globalOptions) error {
	mode, err := policy.ParseMode(o.mode)
	if err != nil {
		return fmt.Errorf("--mode: %w", err)
	}
	explainLevel := o.explain
	if o.explain == explainRules {
		explainLevel = policy.ExplainNone
	}
	input, err := readEvalInput(cmd, o.input)
	if err != nil {
		return err
	}
	answers, err := o.effectAnswers(input)
	if err != nil {
		return err
	}
	input, warnings, err := asPolicyInput(input)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
	}
	if o.breakglass != "" {
		bg, _ := input["breakglass"].(map[string]any)
		if bg == nil {
			bg = map[string]any{}
		}
		bg["active"], bg["grant"] = true, o.breakglass
		input["breakglass"] = bg
	}
	ctx := policyCmdContext(cmd)
	data, err := configData(o.config)
	if err != nil {
		return err
	}
	eng, err := policy.Load(ctx, policy.Options{Paths: o.policies, Config: data})
	if err != nil {
		return err
	}
	// Effect queries are answered from --answers or the audit record given as the input.
	if answers != nil {
		ctx = policy.WithQueries(ctx, policy.NewQueries(policy.RecordedAnswers(answers), policy.QueryLimits{Max: len(answers) + 1}))
	}
	res, evalErr := eng.Eval(ctx, input)
	v := policy.Decide(res, evalErr, mode, o.breakglass)
	out := evalJSON{
		Verdict: v.Decision, Forward: v.Forward(), Reasons: emptyIfNil(v.Reasons), Why: policy.Explain(res, evalErr, mode, o.breakglass),
		Allow: res.Allow, AllowUndefined: res.AllowUndefined, Deny: emptyIfNil(res.Deny), Forbid: emptyIfNil(res.Forbid),
		Budgets: res.Budgets, Grant: v.Grant, Mode: string(mode), Version: eng.Version(), Warnings: warnings,
	}
	if o.explain != "" {
		ex, err := eng.Explain(ctx, input, explainLevel)
		if err != nil {
			return err
		}
		out.Rules, out.Trace = ex.Rules, ex.Trace
	}
	if out.Budgets == nil {
		out.Budgets = []policy.Budget{}
	}
	if evalErr != nil {
		out.Error = evalErr.Error()
	}
	if !v.Forward() {
		out.StatusMessage = "PERMISSION_DENIED: " + policy.DeniedMessage(v.Reasons)
	}
	w := cmd.OutOrStdout()
	if g.output == "json" {
		if err := printJSON(w, out); err != nil {
			return err
		}
		return o.failure(v)
	}
	allow := fmt.Sprint(res.Allow)
	if res.AllowUndefined {
		allow = "undefined (false)"
	}
	budgets := make([]string, len(res.Budgets))
	for i, b := range res.Budgets {
		budgets[i] = fmt.Sprintf("%s (cost %g)", b.Key, b.Cost)
	}
	verdict := v.Decision
	if v.Grant != "" {
		verdict += " (break-glass " + v.Grant + ")"
	}
	fmt.Fprintf(w, "verdict:  %s\n", verdict)
	fmt.Fprintf(w, "reasons:  %s\n", dashList(v.Reasons))
	fmt.Fprintf(w, "why:      %s\n", out.Why)
	if out.StatusMessage != "" {
		fmt.Fprintf(w, "status:   %s\n", out.StatusMessage)
	}
	fmt.Fprintf(w, "allow:    %s\n", allow)
	fmt.Fprintf(w, "deny:     %s\n", dashList(res.Deny))
	fmt.Fprintf(w, "forbid:   %s\n", dashList(res.Forbid))
	fmt.Fprintf(w, "budgets:  %s\n", dashList(budgets))
	if evalErr != nil {
		fmt.Fprintf(w, "error:    %v\n", evalErr)
	}
	fmt.Fprintf(w, "policy:   %s (mode %s)\n", eng.Version(), mode)
	if o.explain != "" {
		writeExplain(w, out.Rules, out.Trace)
	}
	return o.failure(v)
}

func emptyIfNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func dashList(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, "; ")
}

// readInput reads a JSON object from a file or standard input, numbers kept as
// json.Number as the proxy passes them.
func readEvalInput(cmd *cobra.Command, name string) (map[string]any, error) {
	var r io.Reader
	if name == "-" {
		r = cmd.InOrStdin()
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("--input: %w", err)
		}
		defer f.Close()
		r = f
	}
	dec := json.NewDecoder(r)
	dec.UseNumber()
	var in map[string]any
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("--input %s: not a JSON object: %w", name, err)
	}
	if in == nil {
		return nil, fmt.Errorf("--input %s: not a JSON object", name)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("--input %s: unexpected data after the JSON object", name)
	}
	return in, nil
}

// ---- policy replay --------------------------------------------------------------------

type policyReplayOptions struct {
	policies    []string
	db          string
	jsonl       string
	since       string
	descriptors []string
	failOn      string
	examples    int
	now         func() time.Time
	config      string
}

func newPolicyReplayCommand(g *globalOptions) *cobra.Command {
	o := &policyReplayOptions{now: time.Now}
	cmd := &cobra.Command{
		Use:   "replay --policy DIR (--db AUDIT_FILE | --jsonl FILE)",
		Short: "Re-decide recorded traffic under a candidate policy and report what changes",
		Long: `Rebuild the policy input of every recorded request from the audit log, evaluate it
under the candidate policy, and compare with the recorded decision: how many
messages would go from allow to deny and from deny to allow, grouped by method and
principal, with example seqs (look them up with ztpctl audit export).

Read the records from a bbolt audit file (--db: a stopped proxy's file or a copy; a
running proxy holds its file locked) or from JSON lines written by ztpctl audit
export (--jsonl, "-" for standard input).

The candidate decides as in enforce mode; a recorded dryrun_deny or error counts as a
deny. A record allowed under break-glass is replayed under the same grant. Not
replayed: ratelimited records, control-API calls (ztp.v1.*) and calls refused before
the policy ran (unauthenticated, no route). The input is what the record keeps:
fields hidden by audit.redact read "[redacted]", and the streaming flags come from
--descriptors (else false). Records written before ztp rendered zero values lack
them; --descriptors fills them in (and makes Any type URLs canonical), so that a
rule like "prefixLen == 0" decides old records as the proxy decides today.

--fail-on makes it a CI gate: the exit status is non-zero when a change of that
direction is found.`,
		Example: `  ztpctl policy replay --policy policies/ --db audit-copy.db --since 7d
  ztpctl audit export --since 7d > traffic.jsonl
  ztpctl policy replay --policy policies/ --jsonl traffic.jsonl --descriptors etcd.protoset --fail-on allow-to-deny
  ztpctl policy replay --policy policies/ --db audit-copy.db -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd, g) },
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.policies, "policy", nil, "candidate policy file or directory (repeatable)")
	configFlag(f, &o.config)
	f.StringVar(&o.db, "db", "", "audit log file (bbolt) to replay")
	f.StringVar(&o.jsonl, "jsonl", "", `audit records as JSON lines (ztpctl audit export), "-" for standard input`)
	f.StringVar(&o.since, "since", "", "replay records from this time on: RFC 3339, a date, or a duration back from now (24h, 7d)")
	f.StringArrayVar(&o.descriptors, "descriptors", nil, "protoset giving the methods' streaming flags and filling in zero values old records lack (repeatable)")
	enumFlag(f, &o.failOn, "fail-on", "", "", []string{"allow-to-deny", "deny-to-allow", "any"}, "exit non-zero on changes")
	f.IntVar(&o.examples, "examples", 3, "example seqs listed per method and principal")
	cmd.MarkFlagRequired("policy")
	return cmd
}

func (o *policyReplayOptions) run(cmd *cobra.Command, g *globalOptions) error {
	if (o.db == "") == (o.jsonl == "") {
		return usageError(errors.New("give exactly one of --db and --jsonl"))
	}
	since, err := parseTimeFlag(o.since, o.now())
	if err != nil {
		return usageError(fmt.Errorf("--since: %w", err))
	}
	sets, err := loadProtosets(o.descriptors)
	if err != nil {
		return err
	}
	ctx := policyCmdContext(cmd)
	data, err := configData(o.config)
	if err != nil {
		return err
	}
	eng, err := policy.Load(ctx, policy.Options{Paths: o.policies, Config: data})
	if err != nil {
		return err
	}
	opts := policy.ReplayOptions{Since: since, Examples: o.examples}
	if len(sets) > 0 {
		opts.Streaming, opts.Reshape = streamingFlags(sets), reshape(sets)
	}
	rp := policy.NewReplayer(eng, opts)
	add := func(rec *audit.Record) error { return rp.Add(ctx, rec) }
	if o.db != "" {
		err = replayDB(ctx, o.db, add)
	} else {
		err = replayJSONL(cmd, o.jsonl, add)
	}
	if err != nil {
		return err
	}
	rep := rp.Report()

	w := cmd.OutOrStdout()
	if g.output == "json" {
		if err := printJSON(w, rep); err != nil {
			return err
		}
	} else {
		writeReplayText(w, rep, len(sets) > 0)
	}
	a2d, d2a := rep.AllowToDeny.Count, rep.DenyToAllow.Count
	switch {
	case (o.failOn == "allow-to-deny" || o.failOn == "any") && a2d > 0:
		return fmt.Errorf("%d allow→deny changes (--fail-on %s)", a2d, o.failOn)
	case (o.failOn == "deny-to-allow" || o.failOn == "any") && d2a > 0:
		return fmt.Errorf("%d deny→allow changes (--fail-on %s)", d2a, o.failOn)
	}
	return nil
}

// replayDB scans a bbolt audit file. bbolt locks are advisory but exclusive for a writer:
// a running proxy holds its file for as long as it runs.
func replayDB(ctx context.Context, path string, add func(*audit.Record) error) error {
	err := audit.ScanFile(ctx, path, 1, add)
	if errors.Is(err, audit.ErrLocked) {
		return fmt.Errorf("--db %s: %w: a running ztp-proxy holds it; replay a copy taken while the proxy is stopped, or an export (ztpctl audit export --since 7d > traffic.jsonl, then --jsonl traffic.jsonl)", path, err)
	}
	if err != nil {
		return fmt.Errorf("--db %s: %w", path, err)
	}
	return nil
}

func replayJSONL(cmd *cobra.Command, name string, add func(*audit.Record) error) error {
	var r io.Reader
	if name == "-" {
		r = cmd.InOrStdin()
	} else {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("--jsonl: %w", err)
		}
		defer f.Close()
		r = f
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		rec, err := audit.ParseLine(line)
		if err != nil {
			return fmt.Errorf("--jsonl %s:%d: %w", name, n, err)
		}
		if err := add(rec); err != nil {
			return fmt.Errorf("--jsonl %s:%d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("--jsonl %s: %w", name, err)
	}
	return nil
}

func loadProtosets(protosets []string) ([]*decode.Protoset, error) {
	var sets []*decode.Protoset
	for _, p := range protosets {
		ps, err := decode.LoadProtoset(p)
		if err != nil {
			return nil, fmt.Errorf("--descriptors: %w", err)
		}
		sets = append(sets, ps)
	}
	return sets, nil
}

// streamingFlags looks methods up in the protosets; methods they do not know are neither
// client- nor server-streaming, as for the proxy without descriptors.
func streamingFlags(sets []*decode.Protoset) func(string) (bool, bool) {
	return func(method string) (bool, bool) {
		for _, ps := range sets {
			if md, err := ps.FindMethod(context.Background(), method); err == nil {
				return md.IsStreamingClient(), md.IsStreamingServer()
			}
		}
		return false, false
	}
}

// reshape fills in what records written before the proxy rendered zero values lack, from
// the first protoset that knows the method.
func reshape(sets []*decode.Protoset) func(string, map[string]any) (int, error) {
	return func(method string, req map[string]any) (int, error) {
		var err error
		for _, ps := range sets {
			var n int
			if n, err = ps.Reshape(method, req); err == nil {
				return n, nil
			}
		}
		return 0, err
	}
}

func writeReplayText(w io.Writer, rep *policy.ReplayReport, reshaped bool) {
	fmt.Fprintf(w, "candidate %s replayed %d request records", rep.Version, rep.Replayed)
	if rep.Replayed > 0 {
		fmt.Fprintf(w, " (seq %d-%d)", rep.FirstSeq, rep.LastSeq)
	}
	fmt.Fprintln(w)
	if len(rep.Recorded) > 0 {
		fmt.Fprintf(w, "recorded under %s\n", strings.Join(rep.Recorded, ", "))
	}
	fmt.Fprintf(w, "unchanged: %d  allow→deny: %d  deny→allow: %d  candidate errors: %d\n",
		rep.Unchanged, rep.AllowToDeny.Count, rep.DenyToAllow.Count, rep.EvalErrors)
	switch {
	case rep.Reshaped > 0:
		fmt.Fprintf(w, "reshaped: %d records written before zero values were rendered, filled in from --descriptors\n", rep.Reshaped)
	case !reshaped && rep.Replayed > 0:
		fmt.Fprintln(w, "note: without --descriptors, requests are replayed as recorded; records written before ztp rendered zero values lack them")
	}
	var skipped []string
	for _, k := range []string{policy.SkipRatelimited, policy.SkipControlAPI, policy.SkipBeforePolicy, policy.SkipBeforeSince, policy.SkipTruncated, policy.SkipQueryNotRecorded} {
		if n := rep.Skipped[k]; n > 0 {
			skipped = append(skipped, fmt.Sprintf("%d %s", n, strings.ReplaceAll(k, "_", " ")))
		}
	}
	if len(skipped) > 0 {
		fmt.Fprintf(w, "skipped: %s\n", strings.Join(skipped, ", "))
	}
	for _, ch := range []struct {
		title, reasons string
		c              policy.ReplayChange
	}{
		{"allow → deny", "candidate says", rep.AllowToDeny},
		{"deny → allow", "was denied for", rep.DenyToAllow},
	} {
		if ch.c.Count == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s (%d)\n", ch.title, ch.c.Count)
		for _, gr := range ch.c.Groups {
			seqs := make([]string, len(gr.Examples))
			for i, s := range gr.Examples {
				seqs[i] = fmt.Sprint(s)
			}
			fmt.Fprintf(w, "  %5d  %s  %s  e.g. seq %s\n", gr.Count, gr.Method, gr.Principal, strings.Join(seqs, ", "))
			if len(gr.Reasons) > 0 {
				fmt.Fprintf(w, "         %s: %s\n", ch.reasons, strings.Join(slices.Clone(gr.Reasons), "; "))
			}
		}
	}
}

// ---- policy lib -----------------------------------------------------------------------

func newPolicyLibCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "lib",
		Short: "Print the Rego helper library (package ztp.lib) shipped with ztp",
		Long: `Print the source of data.ztp.lib, the helper library the proxy and ztpctl compile in
whenever a policy refers to it (import data.ztp.lib). A policy tree that contains its
own package ztp.lib uses that instead, e.g. a copy saved with this command to pin it.`,
		Example: `  ztpctl policy lib | less
  ztpctl policy lib > policies/vendor/ztp_lib.rego   # pin this version in the policy tree`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := io.WriteString(cmd.OutOrStdout(), policy.Library())
			return err
		},
	}
}

// configFlag adds --config: the proxy's ztp.yaml, whose settings policies read as
// data.ztp_config (the change budgets' limits).
func configFlag(f *pflag.FlagSet, to *string) {
	f.StringVar(to, "config", "", "the proxy's ztp.yaml: give the policy data.ztp_config as the proxy does (budget limits)")
}

// configData reads data.ztp_config from the config file at path ("": none). The files
// the config names are not opened: a CI job has the policies and ztp.yaml, not the keys.
func configData(path string) (map[string]any, error) {
	if path == "" {
		return nil, nil
	}
	cfg, err := config.LoadOffline(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	return cfg.PolicyData(), nil
}
