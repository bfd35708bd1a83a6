package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Budget is a change budget a message draws on (an element of data.ztp.budgets).
type Budget struct {
	Key  string  `json:"key"`
	Cost float64 `json:"cost"`
}

// Result is what the policy said about one message, before break-glass and mode are
// applied (see Decide).
type Result struct {
	// Allow is data.ztp.allow; false when the policy does not define it or it is undefined
	// for this input.
	Allow bool
	// AllowUndefined reports that data.ztp.allow had no value (no allow rule, or none
	// matched and there is no default), so Decide can say so in the reasons.
	AllowUndefined bool
	Deny           []string // data.ztp.deny, sorted, deduplicated
	Forbid         []string // data.ztp.forbid, sorted, deduplicated
	Budgets        []Budget // data.ztp.budgets, sorted by key, then cost
}

// Names of the decision rules in package ztp.
const (
	ruleAllow   = "allow"
	ruleDeny    = "deny"
	ruleForbid  = "forbid"
	ruleBudgets = "budgets"
)

var (
	ztpRef        = ast.MustParseRef("data.ztp")
	decisionNames = [...]string{ruleAllow, ruleDeny, ruleForbid, ruleBudgets}
)

// decisionRules reports, for each decision rule package ztp defines, whether it always has a
// value. A rule with a default, or a multi-value rule (`deny contains msg if ...`, whose
// empty set is still a value) can be queried directly. Any other rule may be undefined for
// some input, and an undefined expression would make the whole query undefined and take the
// other rules' answers with it, so the query reads it through a comprehension instead.
// Rules the policy does not define are left out of the query, since data.ztp.deny in a
// policy without deny rules would be undefined.
func decisionRules(modules map[string]*ast.Module) map[string]bool {
	type shape struct{ total, partial bool }
	shapes := map[string]*shape{}
	for _, m := range modules {
		if !m.Package.Path.Equal(ztpRef) {
			continue
		}
		for _, r := range m.Rules {
			ref := r.Head.Ref()
			if len(ref) == 0 {
				continue
			}
			name, ok := ref[0].Value.(ast.Var)
			if !ok || !slices.Contains(decisionNames[:], string(name)) {
				continue
			}
			s := shapes[string(name)]
			if s == nil {
				s = &shape{}
				shapes[string(name)] = s
			}
			switch {
			case r.Default:
				s.total = true
			case len(ref) == 1 && r.Head.RuleKind() == ast.MultiValue:
			default:
				s.partial = true
			}
		}
	}
	out := map[string]bool{}
	for name, s := range shapes {
		out[name] = s.total || !s.partial
	}
	return out
}

// buildQuery is the one query evaluated per message, e.g.
//
//	allow := data.ztp.allow
//	deny := data.ztp.deny
//	forbid := [x | x := data.ztp.forbid]
func buildQuery(rules map[string]bool) string {
	var q []string
	for _, name := range decisionNames {
		total, ok := rules[name]
		switch {
		case !ok:
		case total:
			q = append(q, fmt.Sprintf("%s := data.ztp.%s", name, name))
		default:
			q = append(q, fmt.Sprintf("%s := [x | x := data.ztp.%s]", name, name))
		}
	}
	return strings.Join(q, "\n")
}

// Eval evaluates the prepared query for one message. Numbers in input should be json.Number
// (or Go integers and float64); values of types other than JSON-shaped maps, slices, strings,
// booleans and numbers are converted through a JSON round trip, which is slow.
//
// An error is returned, and the message must be denied, when evaluation fails (a built-in
// error, conflicting rule values, ctx done) or a decision rule has the wrong type; see Decide.
func (e *Engine) Eval(ctx context.Context, input map[string]any) (Result, error) {
	return e.evalAt(ctx, input, e.now())
}

// EvalValue is Eval with the input already an AST value, as the proxy builds it
// (the parts that stay the same for a whole call converted once; see Value).
func (e *Engine) EvalValue(ctx context.Context, input ast.Value) (Result, error) {
	return e.evalValueAt(ctx, input, e.now())
}

// Value converts a JSON-shaped Go value (maps, slices, strings, booleans, json.Number
// and Go numbers; ast.Value leaves are kept as they are) to an AST value without
// OPA's JSON round trip.
func Value(x any) (ast.Value, error) { return toValue(x) }

// evalAt evaluates with time.now_ns reading now (replay evaluates at the recorded time).
func (e *Engine) evalAt(ctx context.Context, input map[string]any, now time.Time) (Result, error) {
	in, err := toValue(input)
	if err != nil {
		return Result{}, fmt.Errorf("%w: input: %w", ErrEval, err)
	}
	return e.evalValueAt(ctx, in, now)
}

func (e *Engine) evalValueAt(ctx context.Context, in ast.Value, now time.Time) (Result, error) {
	// OPA notices cancellation asynchronously, so a short evaluation could still finish
	// after the caller gave up; check first (and after) so that a done context always
	// denies.
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrEval, err)
	}
	// A read transaction on the (never written) data store, as rego opens one.
	txn, err := e.store.NewTransaction(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrEval, err)
	}
	defer e.store.Abort(ctx, txn)
	// The context's end interrupts a long evaluation (a policy walking a huge
	// request), as rego arranges it, but with context.AfterFunc instead of a
	// goroutine per evaluation.
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	defer stop()
	q := topdown.NewQuery(e.body).
		WithQueryCompiler(e.qc).
		WithCompiler(e.compiler).
		WithStore(e.store).
		WithTransaction(txn).
		WithInput(ast.NewTerm(in)).
		WithTime(now).
		WithCancel(cancel).
		WithBuiltins(engineBuiltins).
		WithMetrics(metrics.NoOp()). // else a timer map per evaluation that nobody reads
		WithStrictBuiltinErrors(true).
		WithIndexing(true).
		WithEarlyExit(true)
	var bindings decisionValues
	results := 0
	err = q.Iter(ctx, func(qr topdown.QueryResult) error {
		results++
		for k, t := range qr {
			if i, ok := e.names[k]; ok {
				bindings[i] = t.Value
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, evalError(err)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrEval, err)
	}
	if results != 1 {
		return Result{}, fmt.Errorf("%w: %d results", ErrUndefined, results)
	}
	return e.result(&bindings)
}

// decisionValues holds what the query bound to each of decisionNames, in order.
type decisionValues [len(decisionNames)]ast.Value

func (e *Engine) result(b *decisionValues) (Result, error) {
	var res Result
	value := func(name string) (ast.Value, bool, error) {
		total, ok := e.rules[name]
		if !ok {
			return nil, false, nil
		}
		v := b[slices.Index(decisionNames[:], name)]
		if v == nil {
			return nil, false, fmt.Errorf("%w: data.ztp.%s has no binding", ErrUndefined, name)
		}
		if total {
			return v, true, nil
		}
		arr, ok := v.(*ast.Array)
		if !ok || arr.Len() > 1 {
			return nil, false, fmt.Errorf("%w: data.ztp.%s: unexpected query result %v", ErrUndefined, name, v)
		}
		if arr.Len() == 0 {
			return nil, false, nil
		}
		return arr.Elem(0).Value, true, nil
	}

	v, ok, err := value(ruleAllow)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		res.AllowUndefined = true
	} else {
		allow, isBool := v.(ast.Boolean)
		if !isBool {
			return Result{}, fmt.Errorf("%w: data.ztp.allow must be a boolean, got %s", ErrType, ast.ValueName(v))
		}
		res.Allow = bool(allow)
	}

	for _, r := range []struct {
		name string
		dst  *[]string
	}{{ruleDeny, &res.Deny}, {ruleForbid, &res.Forbid}} {
		v, ok, err := value(r.name)
		if err != nil {
			return Result{}, err
		}
		if !ok {
			continue
		}
		if *r.dst, err = stringSet(r.name, v); err != nil {
			return Result{}, err
		}
	}

	v, ok, err = value(ruleBudgets)
	if err != nil {
		return Result{}, err
	}
	if ok {
		if res.Budgets, err = budgets(v); err != nil {
			return Result{}, err
		}
	}
	return res, nil
}

func stringSet(name string, v ast.Value) ([]string, error) {
	set, ok := v.(ast.Set)
	if !ok {
		return nil, fmt.Errorf("%w: data.ztp.%s must be a set of strings, got %s", ErrType, name, ast.ValueName(v))
	}
	out := make([]string, 0, set.Len())
	var bad error
	set.Foreach(func(t *ast.Term) {
		s, ok := t.Value.(ast.String)
		if !ok {
			bad = fmt.Errorf("%w: data.ztp.%s must be a set of strings, has %s %v", ErrType, name, ast.ValueName(t.Value), t)
			return
		}
		out = append(out, string(s))
	})
	if bad != nil {
		return nil, bad
	}
	if len(out) == 0 {
		return nil, nil
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func budgets(v ast.Value) ([]Budget, error) {
	set, ok := v.(ast.Set)
	if !ok {
		return nil, fmt.Errorf("%w: data.ztp.budgets must be a set of objects, got %s", ErrType, ast.ValueName(v))
	}
	var out []Budget
	var bad error
	set.Foreach(func(t *ast.Term) {
		if bad != nil {
			return
		}
		b, err := budget(t.Value)
		if err != nil {
			bad = fmt.Errorf("%w: data.ztp.budgets element %v: %w", ErrType, t, err)
			return
		}
		out = append(out, b)
	})
	if bad != nil {
		return nil, bad
	}
	slices.SortFunc(out, func(a, b Budget) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		switch {
		case a.Cost < b.Cost:
			return -1
		case a.Cost > b.Cost:
			return 1
		}
		return 0
	})
	return out, nil
}

// budget reads one {"key": string, "cost": number}. Anything else is refused rather than
// guessed at: a misspelt field must not turn into a free change.
func budget(v ast.Value) (Budget, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return Budget{}, fmt.Errorf("want an object, got %s", ast.ValueName(v))
	}
	var b Budget
	var bad error
	seen := 0
	obj.Foreach(func(k, x *ast.Term) {
		if bad != nil {
			return
		}
		field, _ := k.Value.(ast.String)
		switch field {
		case "key":
			s, ok := x.Value.(ast.String)
			if !ok || s == "" {
				bad = errors.New(`"key" must be a non-empty string`)
				return
			}
			b.Key = string(s)
		case "cost":
			n, ok := x.Value.(ast.Number)
			if !ok {
				bad = errors.New(`"cost" must be a number`)
				return
			}
			f, err := json.Number(n).Float64()
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || f < 0 {
				bad = fmt.Errorf(`"cost" must be a finite number >= 0, got %v`, n)
				return
			}
			b.Cost = f
		default:
			bad = fmt.Errorf("unknown field %v (want key and cost)", k)
			return
		}
		seen++
	})
	if bad != nil {
		return Budget{}, bad
	}
	if seen != 2 {
		return Budget{}, errors.New(`want both "key" and "cost"`)
	}
	return b, nil
}

// toValue converts the proxy's input to an AST value directly. It covers the shapes the
// proxy builds (including gRPC metadata, map[string][]string) so that ast.InterfaceToValue
// never falls back to its JSON round trip for them. Terms are allocated in one slice per
// object or array: the input is converted for every message.
func toValue(x any) (ast.Value, error) {
	switch x := x.(type) {
	case ast.Value:
		// Already converted: the proxy builds the parts of the input that stay the
		// same for a whole call (principal, metadata) once, not per message.
		return x, nil
	case map[string]any:
		terms := make([]ast.Term, 2*len(x))
		kvs := make([][2]*ast.Term, 0, len(x))
		for k, v := range x {
			vv, err := toValue(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			i := 2 * len(kvs)
			terms[i].Value, terms[i+1].Value = ast.String(k), vv
			kvs = append(kvs, [2]*ast.Term{&terms[i], &terms[i+1]})
		}
		return ast.NewObject(kvs...), nil
	case []any:
		return toArray(x)
	case []map[string]any:
		return toArray(x)
	case map[string][]string:
		terms := make([]ast.Term, 2*len(x))
		kvs := make([][2]*ast.Term, 0, len(x))
		for k, v := range x {
			vv, _ := ast.InterfaceToValue(v) // []string cannot fail
			i := 2 * len(kvs)
			terms[i].Value, terms[i+1].Value = ast.String(k), vv
			kvs = append(kvs, [2]*ast.Term{&terms[i], &terms[i+1]})
		}
		return ast.NewObject(kvs...), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%v is not a JSON number", x)
		}
	}
	// Scalars, []string, map[string]string; json.Number is syntax-checked there.
	return ast.InterfaceToValue(x)
}

func toArray[T any](x []T) (ast.Value, error) {
	terms := make([]ast.Term, len(x))
	ptrs := make([]*ast.Term, len(x))
	for i, v := range x {
		vv, err := toValue(v)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		terms[i].Value = vv
		ptrs[i] = &terms[i]
	}
	return ast.NewArray(ptrs...), nil
}
