package policy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// TestOptions say which policy tests RunTests runs and how.
type TestOptions struct {
	// Paths are read as Load reads them, *_test.rego files included.
	Paths []string
	// Run, when set, is a regular expression; only tests whose name matches run.
	Run string
	// Coverage computes which lines of the policy (test files and the helper library
	// excluded) the tests evaluated.
	Coverage bool
	// Timeout bounds each test (default 5s).
	Timeout time.Duration
	// Config is placed at data.ztp_config, as Options.Config.
	Config map[string]any
}

// Test outcomes.
const (
	TestPass  = "pass"
	TestFail  = "fail"  // the test rule was false or undefined
	TestError = "error" // evaluation failed, e.g. a built-in error
	TestSkip  = "skip"  // todo_test_ rules
)

// TestResult is the outcome of one test_ rule.
type TestResult struct {
	Package  string        // e.g. data.ztp_test
	Name     string        // e.g. test_human_put_denied
	File     string        // file of the rule
	Row, Col int           // position of the rule
	Outcome  string        // TestPass, TestFail, TestError or TestSkip
	Duration time.Duration //
	// Detail says why a test did not pass: the error as file:line:col: code: message, or
	// the failing cases of a test with sub-results.
	Detail string
	// Output is what the test printed with print().
	Output string
}

// Location is "file:row:col", the form editors and CI annotations understand.
func (r TestResult) Location() string { return fmt.Sprintf("%s:%d:%d", r.File, r.Row, r.Col) }

// FileCoverage is the coverage of one policy file.
type FileCoverage struct {
	File       string
	Percent    float64
	Covered    int      // lines evaluated by some test
	NotCovered int      // lines no test evaluated
	Missed     [][2]int // not covered, as [first, last] row ranges
}

// Coverage is the line coverage of the policy files (not of test files, nor of the
// helper library, which has its own tests).
type Coverage struct {
	Percent    float64 // 100 when there is no line to cover
	Covered    int
	NotCovered int
	Files      []FileCoverage // sorted by file
}

// TestReport is the result of RunTests.
type TestReport struct {
	Results  []TestResult // sorted by file and position
	Coverage *Coverage    // nil unless TestOptions.Coverage
}

// Count returns how many results have the outcome.
func (r *TestReport) Count(outcome string) int {
	n := 0
	for _, res := range r.Results {
		if res.Outcome == outcome {
			n++
		}
	}
	return n
}

// Passed reports whether every test that ran passed (skipped tests do not count).
func (r *TestReport) Passed() bool { return r.Count(TestFail)+r.Count(TestError) == 0 }

// RunTests runs the test_ rules in the *_test.rego files of opts.Paths with OPA's tester,
// on the modules and data Load would read, with the proxy's capabilities and with
// built-in errors raised, so a test cannot pass by relying on something the proxy
// refuses. When the files hold package ztp, the decision query the proxy would prepare
// is built too, so a policy that would not load in the proxy does not pass its tests.
//
// Compile errors, of policies and tests alike, are returned as ErrCompile. A test that
// fails is not an error: it is in the report (see TestReport.Passed).
func RunTests(ctx context.Context, opts TestOptions) (*TestReport, error) {
	src, err := readSource(opts.Paths, true)
	if err != nil {
		return nil, err
	}
	if err := src.addConfig(opts.Config); err != nil {
		return nil, err
	}
	policy, files, err := src.selectModules(false)
	switch {
	case errors.Is(err, ErrNoPolicy):
		// A tree of tests alone (a library tested elsewhere) may still have tests.
		policy = nil
	case err != nil:
		return nil, err
	}
	if hasPackage(policy, ztpRef) {
		if _, err := newEngine(ctx, src, policy, files, Options{}); err != nil {
			return nil, err
		}
	}
	all, _, err := src.selectModules(true)
	if err != nil {
		return nil, err
	}
	return runTests(ctx, all, src.data, policy, opts)
}

// LoadTested loads like Load (opts.Tests is ignored: the engine and its Version never
// include test files) and runs the policy's own tests against the same read of the files,
// as a reload must: a policy whose tests fail is refused with ErrTestsFailed, and the report
// says which. A policy without tests passes.
func LoadTested(ctx context.Context, opts Options) (*Engine, *TestReport, error) {
	src, err := readSource(opts.Paths, true)
	if err != nil {
		return nil, nil, err
	}
	if err := src.addConfig(opts.Config); err != nil {
		return nil, nil, err
	}
	modules, files, err := src.selectModules(false)
	if err != nil {
		return nil, nil, err
	}
	e, err := newEngine(ctx, src, modules, files, opts)
	if err != nil {
		return nil, nil, err
	}
	all, _, err := src.selectModules(true)
	if err != nil {
		return nil, nil, err
	}
	rep, err := runTests(ctx, all, src.data, nil, TestOptions{})
	if err != nil {
		return nil, nil, err
	}
	if !rep.Passed() {
		return nil, rep, fmt.Errorf("%w: %s", ErrTestsFailed, rep.summary())
	}
	return e, rep, nil
}

func hasPackage(modules map[string]*ast.Module, pkg ast.Ref) bool {
	for _, m := range modules {
		if m.Package.Path.Equal(pkg) {
			return true
		}
	}
	return false
}

// summary names the tests that did not pass, for error messages.
func (r *TestReport) summary() string {
	var bad []string
	for _, res := range r.Results {
		if res.Outcome == TestFail || res.Outcome == TestError {
			s := fmt.Sprintf("%s: %s.%s %s", res.Location(), res.Package, res.Name, strings.ToUpper(res.Outcome))
			if res.Detail != "" {
				s += ": " + res.Detail
			}
			bad = append(bad, s)
		}
	}
	return fmt.Sprintf("%d of %d tests did not pass: %s", len(bad), len(r.Results), strings.Join(bad, "; "))
}

// runTests runs the tests in modules; coverage, when asked, is computed over covered.
func runTests(ctx context.Context, modules map[string]*ast.Module, data map[string]any, covered map[string]*ast.Module, opts TestOptions) (*TestReport, error) {
	store := inmem.NewFromObjectWithOpts(deepCopy(data).(map[string]any), inmem.OptRoundTripOnWrite(false))
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: tests: %w", err)
	}
	defer store.Abort(ctx, txn)

	compiler := ast.NewCompiler().
		WithCapabilities(Capabilities()).
		WithEnablePrintStatements(true).
		WithDefaultRegoVersion(ast.RegoV1)
	runner := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		SetModules(modules).
		SetDefaultRegoVersion(ast.RegoV1).
		RaiseBuiltinErrors(true).
		CapturePrintOutput(true)
	if opts.Timeout > 0 {
		runner.SetTimeout(opts.Timeout)
	}
	if opts.Run != "" {
		runner.Filter(opts.Run)
	}
	var cov *cover.Cover
	if opts.Coverage {
		cov = cover.New()
		runner.SetCoverageQueryTracer(cov)
	}
	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		var astErrs ast.Errors
		if errors.As(err, &astErrs) {
			return nil, compileError(astErrs)
		}
		return nil, fmt.Errorf("policy: tests: %w", err)
	}
	rep := &TestReport{}
	for r := range ch {
		rep.Results = append(rep.Results, testResult(r))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("policy: tests: %w", err)
	}
	slices.SortFunc(rep.Results, func(a, b TestResult) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Row, b.Row), cmp.Compare(a.Col, b.Col), strings.Compare(a.Name, b.Name))
	})
	if cov != nil {
		rep.Coverage = coverage(cov, covered)
	}
	return rep, nil
}

func testResult(r *tester.Result) TestResult {
	out := TestResult{
		Package:  r.Package,
		Name:     r.Name,
		Duration: r.Duration,
		Output:   string(r.Output),
	}
	if r.Location != nil {
		out.File, out.Row, out.Col = r.Location.File, r.Location.Row, r.Location.Col
	}
	switch {
	case r.Skip:
		out.Outcome = TestSkip
	case r.Error != nil:
		out.Outcome = TestError
		out.Detail = testError(r.Error)
	case r.Fail:
		out.Outcome = TestFail
		var failed []string
		for path, sub := range r.SubResults.Iter {
			if sub.Fail && len(sub.SubResults) == 0 {
				failed = append(failed, strings.Join(path, "/"))
			}
		}
		if len(failed) > 0 {
			slices.Sort(failed)
			out.Detail = "failed cases: " + strings.Join(failed, ", ")
		}
	default:
		out.Outcome = TestPass
	}
	return out
}

func testError(err error) string {
	var te *topdown.Error
	if errors.As(err, &te) {
		return formatError(te.Location, te.Code, te.Message)
	}
	var astErrs ast.Errors
	if errors.As(err, &astErrs) {
		return strings.TrimPrefix(compileError(astErrs).Error(), ErrCompile.Error()+": ")
	}
	// The tester reports several built-in errors of one test as a formatted slice of
	// topdown.Error values; pick out each "code message file:row" once.
	if m := builtinErrList.FindAllStringSubmatch(err.Error(), -1); len(m) > 0 {
		var out []string
		for _, x := range m {
			out = append(out, fmt.Sprintf("%s: %s: %s", x[3], x[1], x[2]))
		}
		slices.Sort(out)
		return strings.Join(slices.Compact(out), "; ")
	}
	return err.Error()
}

var builtinErrList = regexp.MustCompile(`\{(\w+) (.+?) (\S+:\d+) `)

func coverage(c *cover.Cover, modules map[string]*ast.Module) *Coverage {
	files := map[string]*ast.Module{}
	for name, m := range modules {
		if name != libraryFile {
			files[name] = m
		}
	}
	rep := c.Report(files)
	out := &Coverage{Percent: 100}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		fr := rep.Files[name]
		fc := FileCoverage{File: name, Percent: 100}
		if fr != nil {
			fc.Covered, fc.NotCovered = fr.CoveredLines, fr.NotCoveredLines
			if fc.Covered+fc.NotCovered > 0 {
				fc.Percent = fr.Coverage
			}
			for _, r := range fr.NotCovered {
				fc.Missed = append(fc.Missed, [2]int{r.Start.Row, r.End.Row})
			}
			slices.SortFunc(fc.Missed, func(a, b [2]int) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
			fc.Missed = mergeRows(fc.Missed)
		}
		out.Covered += fc.Covered
		out.NotCovered += fc.NotCovered
		out.Files = append(out.Files, fc)
	}
	if total := out.Covered + out.NotCovered; total > 0 {
		out.Percent = 100 * float64(out.Covered) / float64(total)
	}
	return out
}

// mergeRows joins sorted row ranges that overlap or touch: an expression and the rule
// around it are reported as one range.
func mergeRows(rs [][2]int) [][2]int {
	var out [][2]int
	for _, r := range rs {
		if n := len(out); n > 0 && r[0] <= out[n-1][1]+1 {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}
