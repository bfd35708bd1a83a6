package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/ztp-dev/ztp/audit"
)

// QueryBuiltin is the name of the effect-query built-in:
//
//	answer := ztp.query(method, request)
//
// sends request (an object in the protojson form input.request has) to the upstream that
// serves the message being decided, as method, and returns the upstream's answer rendered
// the same way. The proxy allows only the methods its configuration lists for that
// upstream (upstreams[].effect_queries), which the operator vouches are read-only.
//
// Every failure is an evaluation error, which denies: a method that is not allowed, more
// queries than the decision may make, a timeout, an upstream error, and any use where no
// upstream is there to ask (ztpctl policy eval; tests that do not mock it with
// `with ztp.query as ...`). A query is never undefined: a policy cannot read a failed
// query as "nothing would be touched".
const QueryBuiltin = "ztp.query"

// queryDecl declares the built-in to every compiler ztp uses (see Capabilities), so a
// policy calling it compiles in the proxy and in every ztpctl policy command alike.
var queryDecl = &ast.Builtin{
	Name: QueryBuiltin,
	Description: "Sends a read-only request (method, protojson object) to the upstream of the message " +
		"being decided and returns its answer as an object. Errors deny.",
	Decl: types.NewFunction(
		types.Args(
			types.Named("method", types.S).Description(`full gRPC method, e.g. "/etcdserverpb.KV/Range"`),
			types.Named("request", types.NewObject(nil, types.NewDynamicProperty(types.S, types.A))).Description("the request, as protojson renders it"),
		),
		types.Named("answer", types.NewObject(nil, types.NewDynamicProperty(types.S, types.A))).Description("the upstream's response, as protojson renders it"),
	),
	// Its answer depends on the upstream, not on its arguments alone: never fold it at
	// compile time.
	Nondeterministic: true,
}

// Querier sends one effect query. request is a JSON object in canonical form (see
// audit.Canonical); the answer is the response as a JSON object. An error means the query
// failed and the decision must be denied.
type Querier interface {
	// Allows says why method may not be queried at all; nil: it may.
	Allows(method string) error
	Query(ctx context.Context, method string, request []byte) (answer []byte, err error)
}

// QueryLimits bound the effect queries of one decision.
type QueryLimits struct {
	// Max is how many queries reach the upstream per decision (repeats are answered from
	// the decision's cache and do not count). Zero or less: no query at all.
	Max int
	// Timeout bounds all the queries of a decision together, from the start of the first.
	// Zero: no bound beyond the context's.
	Timeout time.Duration
}

// Query is one effect query a decision made, for its audit record.
type Query struct {
	Method  string
	Request []byte // canonical JSON
	Answer  []byte // JSON object; nil when the query failed
	Err     error
}

// Queries is the effect-query state of one decision: the querier it may use, its limits,
// the answers so far (each distinct query reaches the upstream once) and the log of what
// was asked. Bind it to the evaluation's context with WithQueries, evaluate, then read
// Made for the audit record. Safe for concurrent use, though one evaluation queries
// sequentially.
type Queries struct {
	q      Querier
	limits QueryLimits

	mu       sync.Mutex
	deadline time.Time // set by the first query when limits.Timeout > 0
	sent     int
	cache    map[queryKey]int // index into made
	made     []Query
}

type queryKey struct{ method, request string }

// NewQueries starts the effect-query state of one decision.
func NewQueries(q Querier, limits QueryLimits) *Queries {
	return &Queries{q: q, limits: limits}
}

type queriesKey struct{}

// WithQueries makes qs the effect-query state of evaluations under ctx.
func WithQueries(ctx context.Context, qs *Queries) context.Context {
	return context.WithValue(ctx, queriesKey{}, qs)
}

func queriesFrom(ctx context.Context) *Queries {
	qs, _ := ctx.Value(queriesKey{}).(*Queries)
	return qs
}

// Made returns the queries in the order they were first asked. A repeated query is listed
// once: it was answered from the cache.
func (s *Queries) Made() []Query {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.made...)
}

// errNoQuerier is what ztp.query says where no upstream can be asked.
var errNoQuerier = errors.New("no upstream to ask here: effect queries need upstreams[].effect_queries " +
	"in ztp.yaml; in policy tests mock it with `with ztp.query as ...`; ztpctl policy eval takes --answers")

// ask answers one query: from the decision's cache, or from the upstream within the limits.
func (s *Queries) ask(ctx context.Context, method string, request []byte) ([]byte, error) {
	if s == nil || s.q == nil {
		return nil, errNoQuerier
	}
	key := queryKey{method, string(request)}
	s.mu.Lock()
	if i, ok := s.cache[key]; ok {
		q := s.made[i]
		s.mu.Unlock()
		return q.Answer, q.Err
	}
	refused := s.q.Allows(method)
	if refused == nil && s.sent >= s.limits.Max {
		refused = fmt.Errorf("more than %d effect queries in one decision (upstreams[].effect_queries.max_per_decision)", max(s.limits.Max, 0))
	}
	if refused != nil {
		defer s.mu.Unlock()
		return nil, s.logLocked(key, nil, refused)
	}
	s.sent++
	if s.limits.Timeout > 0 && s.deadline.IsZero() {
		s.deadline = time.Now().Add(s.limits.Timeout)
	}
	deadline := s.deadline
	s.mu.Unlock()

	qctx := ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		qctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	answer, err := s.q.Query(qctx, method, request)
	if ctx.Err() == nil && (qctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)) {
		// The decision's time ran out (whatever error the querier made of it; one that
		// ignored its deadline and answered late still fails the decision).
		err = fmt.Errorf("effect queries took longer than %v (upstreams[].effect_queries.timeout): %w", s.limits.Timeout, qctx.Err())
	}
	if err == nil {
		if answer, err = audit.Canonical(answer); err == nil && (len(answer) == 0 || answer[0] != '{') {
			err = errors.New("the answer is not a JSON object")
		}
	}
	if err != nil {
		answer = nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	return answer, s.logLocked(key, answer, err)
}

// logLocked records a query and its outcome, and caches it for the rest of the decision.
func (s *Queries) logLocked(key queryKey, answer []byte, err error) error {
	if s.cache == nil {
		s.cache = map[queryKey]int{}
	}
	s.cache[key] = len(s.made)
	s.made = append(s.made, Query{Method: key.method, Request: []byte(key.request), Answer: answer, Err: err})
	return err
}

// queryBuiltin is the implementation the engine evaluates with: it asks the Queries bound
// to the evaluation's context. Every failure halts the evaluation, strict built-in errors
// or not, so a query can never quietly make a rule undefined.
func queryBuiltin(bctx topdown.BuiltinContext, operands []*ast.Term, iter func(*ast.Term) error) error {
	answer, err := query(bctx.Context, operands[0], operands[1])
	if err != nil {
		return topdown.Halt{Err: &topdown.Error{Code: topdown.BuiltinErr, Message: QueryBuiltin + ": " + err.Error(), Location: bctx.Location}}
	}
	return iter(answer)
}

// engineBuiltins is what every evaluation of an Engine is given: the declaration comes
// from Capabilities, the implementation reads the decision's Queries from the context.
var engineBuiltins = map[string]*topdown.Builtin{
	QueryBuiltin: {Decl: queryDecl, Func: queryBuiltin},
}

func query(ctx context.Context, m, r *ast.Term) (*ast.Term, error) {
	method, ok := m.Value.(ast.String)
	if !ok {
		return nil, fmt.Errorf("method must be a string, got %s", ast.ValueName(m.Value))
	}
	if _, ok := r.Value.(ast.Object); !ok {
		return nil, fmt.Errorf("request must be an object, got %s", ast.ValueName(r.Value))
	}
	js, err := ast.JSON(r.Value)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	raw, err := json.Marshal(js)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	request, err := audit.Canonical(raw)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	answer, err := queriesFrom(ctx).ask(ctx, string(method), request)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", string(method), err)
	}
	v, err := ast.ValueFromReader(bytes.NewReader(answer))
	if err != nil {
		return nil, fmt.Errorf("%s: answer: %w", string(method), err)
	}
	return ast.NewTerm(v), nil
}

// queryFunction is the implementation for evaluations through rego (Explain, OPA's
// tester): it asks the Queries of the evaluation's context, as the engine's does.
func queryFunction() func(*rego.Rego) {
	return rego.FunctionDyn(&rego.Function{Name: QueryBuiltin, Decl: queryDecl.Decl, Nondeterministic: true},
		func(bctx rego.BuiltinContext, terms []*ast.Term) (*ast.Term, error) {
			return query(bctx.Context, terms[0], terms[1])
		})
}

// testBuiltins gives OPA's tester the implementation: a test either mocks ztp.query
// (`with ztp.query as ...`) or gets the same error as any evaluation without an upstream.
func testBuiltins() []*tester.Builtin {
	return []*tester.Builtin{{Decl: queryDecl, Func: queryFunction()}}
}
