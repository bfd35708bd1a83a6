package proxy

import (
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/ztp-dev/ztp/identity"
	"github.com/ztp-dev/ztp/policy"
)

// Keys of the policy input document (README, "The policy contract"). Immutable
// terms shared by every input, as OPA shares its own interned terms.
var (
	keyPrincipal       = ast.StringTerm("principal")
	keyMethod          = ast.StringTerm("method")
	keyService         = ast.StringTerm("service")
	keyRPC             = ast.StringTerm("rpc")
	keyUpstream        = ast.StringTerm("upstream")
	keyRequest         = ast.StringTerm("request")
	keyRequestDecoded  = ast.StringTerm("request_decoded")
	keyRequestUnknown  = ast.StringTerm("request_unknown_fields")
	keyRequestReason   = ast.StringTerm("request_undecoded_reason")
	keyStream          = ast.StringTerm("stream")
	keyClientStreaming = ast.StringTerm("client_streaming")
	keyServerStreaming = ast.StringTerm("server_streaming")
	keyMessageIndex    = ast.StringTerm("message_index")
	keyMetadata        = ast.StringTerm("metadata")
	keyJustification   = ast.StringTerm("justification")
	keyTicket          = ast.StringTerm("ticket")
	keyBreakglass      = ast.StringTerm("breakglass")
	keyTime            = ast.StringTerm("time")
	keyActive          = ast.StringTerm("active")
	keyGrant           = ast.StringTerm("grant")
	keyReason          = ast.StringTerm("reason")
	keyExpires         = ast.StringTerm("expires")
)

// callTerms are the parts of the policy input that stay the same for a whole
// call, converted once: a watch or keep-alive stream is decided per message.
type callTerms struct {
	principal, method, service, rpc, upstream, metadata *ast.Term
	clientStreaming, serverStreaming                    *ast.Term
	justification, ticket                               *ast.Term // the caller's own; a grant may fill them per message
	noGrant                                             *ast.Term // breakglass when no grant is active
	noUnknown                                           *ast.Term // request_unknown_fields of a message without any
}

// terms returns the call's terms, building them on first use.
func (c *call) terms() *callTerms {
	if c.in0 != nil {
		return c.in0
	}
	upstream := ""
	if c.upstream != nil {
		upstream = c.upstream.name
	}
	c.in0 = &callTerms{
		principal:       ast.NewTerm(principalValue(c.principal)),
		method:          ast.StringTerm(c.method),
		service:         ast.StringTerm(c.service),
		rpc:             ast.StringTerm(c.rpc),
		upstream:        ast.StringTerm(upstream),
		metadata:        ast.NewTerm(c.mdInput),
		clientStreaming: ast.InternedTerm(c.info.ClientStreaming),
		serverStreaming: ast.InternedTerm(c.info.ServerStreaming),
		justification:   ast.StringTerm(c.justification),
		ticket:          ast.StringTerm(c.ticket),
		noGrant:         ast.ObjectTerm([2]*ast.Term{keyActive, ast.InternedTerm(false)}),
		noUnknown:       ast.ArrayTerm(),
	}
	return c.in0
}

// input builds the policy input of one message. req is the decoded request, or
// nil when the message was not decoded (input.request is then null) and
// undecoded says why (one of decode's Reason names; "" when decoded); unknown
// lists where it has fields the descriptors do not know.
func (p *Pipeline) input(c *call, req ast.Value, undecoded string, unknown []string, idx int, g GrantInfo, hasGrant bool, now time.Time) ast.Value {
	t := c.terms()
	unknownIn := t.noUnknown
	if len(unknown) > 0 {
		terms := make([]*ast.Term, len(unknown))
		for i, u := range unknown {
			terms[i] = ast.StringTerm(u)
		}
		unknownIn = ast.ArrayTerm(terms...)
	}
	request, decoded := ast.NullTerm(), ast.InternedTerm(false)
	if req != nil {
		request, decoded = ast.NewTerm(req), ast.InternedTerm(true)
	}
	justification, ticket, bg := t.justification, t.ticket, t.noGrant
	if hasGrant {
		if c.justification == "" {
			justification = ast.StringTerm(g.Reason)
		}
		if c.ticket == "" {
			ticket = ast.StringTerm(g.Ticket)
		}
		bg = ast.ObjectTerm(
			[2]*ast.Term{keyActive, ast.InternedTerm(true)},
			[2]*ast.Term{keyGrant, ast.StringTerm(g.ID)},
			[2]*ast.Term{keyReason, ast.StringTerm(g.Reason)},
			[2]*ast.Term{keyTicket, ast.StringTerm(g.Ticket)},
			[2]*ast.Term{keyExpires, ast.StringTerm(g.Expires.UTC().Format(time.RFC3339))},
		)
	}
	stream := ast.ObjectTerm(
		[2]*ast.Term{keyClientStreaming, t.clientStreaming},
		[2]*ast.Term{keyServerStreaming, t.serverStreaming},
		[2]*ast.Term{keyMessageIndex, ast.InternedTerm(idx)},
	)
	return ast.NewObject(
		[2]*ast.Term{keyPrincipal, t.principal},
		[2]*ast.Term{keyMethod, t.method},
		[2]*ast.Term{keyService, t.service},
		[2]*ast.Term{keyRPC, t.rpc},
		[2]*ast.Term{keyUpstream, t.upstream},
		[2]*ast.Term{keyRequest, request},
		[2]*ast.Term{keyRequestDecoded, decoded},
		[2]*ast.Term{keyRequestReason, ast.InternedTerm(undecoded)},
		[2]*ast.Term{keyRequestUnknown, unknownIn},
		[2]*ast.Term{keyStream, stream},
		[2]*ast.Term{keyMetadata, t.metadata},
		[2]*ast.Term{keyJustification, justification},
		[2]*ast.Term{keyTicket, ticket},
		[2]*ast.Term{keyBreakglass, bg},
		[2]*ast.Term{keyTime, ast.StringTerm(now.UTC().Format(time.RFC3339))},
	)
}

// requestValue converts a decoded request for the policy. The decoder renders
// only JSON-shaped values, so an error means a bug; the message is then denied
// as a policy error, never admitted undecided.
func requestValue(req map[string]any) (ast.Value, error) {
	if req == nil {
		return ast.NewObject(), nil // an all-default message is {}, as protojson prints it
	}
	v, err := policy.Value(req)
	if err != nil {
		return nil, fmt.Errorf("%w: input.request: %w", policy.ErrEval, err)
	}
	return v, nil
}

// principalValue renders the principal for the policy input.
func principalValue(p identity.Principal) ast.Value {
	groups := make([]*ast.Term, len(p.Groups))
	for i, g := range p.Groups {
		groups[i] = ast.StringTerm(g)
	}
	return ast.NewObject(
		[2]*ast.Term{ast.StringTerm("id"), ast.StringTerm(p.ID)},
		[2]*ast.Term{ast.StringTerm("kind"), ast.StringTerm(p.Kind)},
		[2]*ast.Term{ast.StringTerm("groups"), ast.ArrayTerm(groups...)},
		[2]*ast.Term{ast.StringTerm("authn"), ast.StringTerm(p.Authn)},
	)
}
