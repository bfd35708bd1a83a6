package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/decode"
	"github.com/ztp-dev/ztp/policy"
)

// keptAnswerBytes bounds the effect-query answers one audit record keeps whole (their
// canonical JSON, added up in the order asked); past it a query keeps only its answer's
// SHA-256. Replay answers a query again only from a kept answer.
const keptAnswerBytes = 16 << 10

// effectQuerier sends the ztp.query requests of policies to one upstream: only the
// methods its effect_queries section lists, encoded with its descriptors, over the
// proxy's own connection (the proxy's TLS identity, none of the caller's metadata).
type effectQuerier struct {
	upstream string
	conn     grpc.ClientConnInterface
	types    decode.Resolver // the upstream's descriptors: requests are encoded with them
	methods  map[string]protoreflect.MethodDescriptor
	limits   policy.QueryLimits
}

// newEffectQuerier checks the configured methods against the descriptors (see
// CheckEffectQueries).
func newEffectQuerier(name string, conn grpc.ClientConnInterface, ps *decode.Protoset, qc *config.EffectQueries) (*effectQuerier, error) {
	methods, err := effectMethods(ps, qc)
	if err != nil {
		return nil, err
	}
	return &effectQuerier{
		upstream: name,
		conn:     conn,
		types:    ps,
		methods:  methods,
		limits:   policy.QueryLimits{Max: qc.MaxPerDecision, Timeout: qc.Timeout},
	}, nil
}

// CheckEffectQueries checks an upstream's effect_queries against its descriptors, as
// start-up does (ztp-proxy validate): each method must be a unary method they define.
func CheckEffectQueries(ps *decode.Protoset, qc *config.EffectQueries) error {
	_, err := effectMethods(ps, qc)
	return err
}

func effectMethods(ps *decode.Protoset, qc *config.EffectQueries) (map[string]protoreflect.MethodDescriptor, error) {
	if ps == nil {
		return nil, fmt.Errorf("effect_queries: needs descriptors")
	}
	methods := map[string]protoreflect.MethodDescriptor{}
	for i, m := range qc.Methods {
		md, err := ps.FindMethod(context.Background(), m)
		if err != nil {
			return nil, fmt.Errorf("effect_queries.methods[%d]: %w", i, err)
		}
		if md.IsStreamingClient() || md.IsStreamingServer() {
			return nil, fmt.Errorf("effect_queries.methods[%d]: %s is a streaming method; only unary methods can be queried", i, m)
		}
		methods[m] = md
	}
	return methods, nil
}

// Allows implements policy.Querier: only the configured methods.
func (q *effectQuerier) Allows(method string) error {
	if _, ok := q.methods[method]; !ok {
		return fmt.Errorf("upstream %s allows no effect query %s (upstreams[].effect_queries.methods: %v)", q.upstream, method, slices.Sorted(maps.Keys(q.methods)))
	}
	return nil
}

// Query implements policy.Querier.
func (q *effectQuerier) Query(ctx context.Context, method string, request []byte) ([]byte, error) {
	if err := q.Allows(method); err != nil {
		return nil, err
	}
	md := q.methods[method]
	// As ztpctl policy input encodes a hand-written request: Any and extensions
	// resolve against the upstream's descriptors.
	b, err := decode.EncodeJSON(ctx, q.types, method, request)
	if err != nil {
		return nil, err
	}
	var out frame
	if err := q.conn.Invoke(ctx, method, &frame{Data: b}, &out, grpc.ForceCodecV2(rawCodec{})); err != nil {
		if _, ok := ctx.Deadline(); ok && status.Code(err) == codes.DeadlineExceeded {
			// The query's deadline, which the upstream (told by grpc-timeout) may
			// notice before the local timer does: say so in terms the caller knows.
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return nil, fmt.Errorf("upstream %s: %w", q.upstream, err)
	}
	resp := dynamicpb.NewMessage(md.Output())
	if err := proto.Unmarshal(out.Data, resp); err != nil {
		return nil, fmt.Errorf("upstream %s: answer is not a %s: %w", q.upstream, md.Output().FullName(), err)
	}
	m, err := decode.ToMap(resp)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: answer: %w", q.upstream, err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return json.Marshal(m)
}

// queries binds a fresh effect-query state for one decision to ctx, when the upstream
// allows queries; otherwise ztp.query fails (and denies) on its own.
func (u *upstream) queries(ctx context.Context) (context.Context, *policy.Queries) {
	if u == nil || u.querier == nil {
		return ctx, nil
	}
	qs := policy.NewQueries(u.querier, u.querier.limits)
	return policy.WithQueries(ctx, qs), qs
}

// auditQueries turns the queries of a decision into its audit record's queries field.
func auditQueries(qs *policy.Queries) []audit.Query {
	made := qs.Made()
	if len(made) == 0 {
		return nil
	}
	out := make([]audit.Query, 0, len(made))
	budget := keptAnswerBytes
	for _, m := range made {
		errText := ""
		if m.Err != nil {
			errText = m.Err.Error()
		}
		keep := 0
		if len(m.Answer) <= budget {
			keep = budget
			budget -= len(m.Answer)
		}
		aq, err := audit.NewQuery(m.Method, m.Request, m.Answer, errText, keep)
		if err != nil {
			aq = audit.Query{Method: m.Method, Request: m.Request, Error: err.Error()}
		}
		out = append(out, aq)
	}
	return out
}
