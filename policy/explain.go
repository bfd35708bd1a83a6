package policy

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"
)

// Trace levels of Explain, named as `opa eval --explain` names them.
const (
	ExplainNone  = ""      // rule values only
	ExplainNotes = "notes" // plus the notes the policy left with trace()
	ExplainFails = "fails" // plus every expression that failed
	ExplainFull  = "full"  // plus the whole evaluation
)

// ExplainLevels lists the accepted trace levels (ExplainNone aside).
var ExplainLevels = []string{ExplainNotes, ExplainFails, ExplainFull}

// RuleValue is what one rule of package ztp says for an input.
type RuleValue struct {
	Name string `json:"name"`
	// Value is the rule's value, JSON-shaped; nil when the rule is undefined for the
	// input (Defined is then false) or its evaluation failed (Error is then set).
	Value   any    `json:"value,omitempty"`
	Defined bool   `json:"defined"`
	Error   string `json:"error,omitempty"`
}

// Explanation shows how the policy reaches its decision for one input: the value of
// every rule of package ztp, intermediate ones included (functions, which take
// arguments, have no value of their own and are left out), and, when asked for, OPA's
// evaluation trace of the decision query.
type Explanation struct {
	Rules []RuleValue `json:"rules"` // sorted by name
	Trace string      `json:"trace,omitempty"`
}

// Explain evaluates every rule of package ztp for input on its own, so that one rule
// failing (a built-in error, conflicting values) is reported against that rule and
// does not hide the others, and traces the decision query at the given level. It is a
// tool for policy authors: it costs many evaluations and is never on the proxy's path.
func (e *Engine) Explain(ctx context.Context, input map[string]any, level string) (Explanation, error) {
	if level != ExplainNone && !slices.Contains(ExplainLevels, level) {
		return Explanation{}, fmt.Errorf("explain level %q: want one of %v", level, ExplainLevels)
	}
	in, err := toValue(input)
	if err != nil {
		return Explanation{}, fmt.Errorf("%w: input: %w", ErrEval, err)
	}
	now := e.now()
	var out Explanation
	for _, name := range ruleNames(e.modules) {
		rv := RuleValue{Name: name}
		rs, err := e.rego(fmt.Sprintf("x := data.ztp.%s", name), in, now, nil).Eval(ctx)
		switch {
		case err != nil:
			rv.Error = err.Error()
		case len(rs) == 1:
			rv.Value, rv.Defined = rs[0].Bindings["x"], true
		}
		out.Rules = append(out.Rules, rv)
	}
	if level == ExplainNone {
		return out, nil
	}
	tracer := topdown.NewBufferTracer()
	// The evaluation's own error is already in the rule values; the trace shows how far it got.
	_, _ = e.rego(buildQuery(e.rules), in, now, tracer).Eval(ctx)
	events := []*topdown.Event(*tracer)
	switch level {
	case ExplainNotes:
		events = lineage.Notes(events)
	case ExplainFails:
		events = lineage.Fails(events)
	case ExplainFull:
		events = lineage.Full(events)
	}
	var b bytes.Buffer
	topdown.PrettyTraceWithLocation(&b, events)
	out.Trace = b.String()
	return out, nil
}

// rego prepares one evaluation of query against the engine's compiled policy, with the
// proxy's settings (strict built-in errors, the engine's clock).
func (e *Engine) rego(query string, in ast.Value, now time.Time, tracer topdown.QueryTracer) *rego.Rego {
	opts := []func(*rego.Rego){
		rego.Query(query),
		rego.Compiler(e.compiler),
		rego.Store(e.store),
		rego.ParsedInput(in),
		rego.Time(now),
		rego.StrictBuiltinErrors(true),
	}
	if tracer != nil {
		opts = append(opts, rego.QueryTracer(tracer))
	}
	return rego.New(opts...)
}

// ruleNames lists the names of the value-producing rules of package ztp, sorted.
func ruleNames(modules map[string]*ast.Module) []string {
	seen := map[string]bool{}
	for _, m := range modules {
		if !m.Package.Path.Equal(ztpRef) {
			continue
		}
		for _, r := range m.Rules {
			if len(r.Head.Args) > 0 {
				continue // a function
			}
			ref := r.Head.Ref()
			if len(ref) == 0 {
				continue
			}
			if name, ok := ref[0].Value.(ast.Var); ok {
				seen[string(name)] = true
			}
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
