package proxy

import (
	"context"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/grpc/metadata"

	"github.com/ztp-dev/ztp/internal/textcut"
)

// maxHeaderBytes bounds what is kept of one allowed header: its values in
// order until they add up to this many bytes, the one crossing it cut (on a
// UTF-8 boundary) and marked with truncatedMark, later ones dropped. The
// same bound applies to the justification and the ticket. Without it, every
// record of a call could carry max_header_bytes (64 KiB) of metadata.
const maxHeaderBytes = 1024

// truncatedMark ends a header value cut to maxHeaderBytes.
const truncatedMark = textcut.Mark

// headerAllow is audit.headers: the only request headers the proxy reads for
// the policy input and the audit record. x-ztp-justification and
// x-ztp-ticket, when allowed, fill justification and ticket; the others
// form metadata. Everything else a client sends (credentials such as
// authorization, proxy-authorization, cookie, x-api-key, x-vault-token,
// etcd's token, any header nobody thought of) is never seen by a policy and
// never recorded, though it still reaches the upstream unless the proxy
// strips it (see outgoingMetadata).
type headerAllow map[string]bool

func newHeaderAllow(names []string) headerAllow {
	h := make(headerAllow, len(names))
	for _, n := range names {
		h[n] = true
	}
	return h
}

// readMetadata keeps what the policy and the auditors may see of the
// client's metadata: the allowed headers, bounded. input.metadata and the
// record's metadata are this one map, so ztpctl policy replay rebuilds the
// input exactly.
func (c *call) readMetadata(ctx context.Context, allow headerAllow) {
	in, _ := metadata.FromIncomingContext(ctx)
	c.metadata = map[string][]string{}
	var kvs [][2]*ast.Term
	for k, vs := range in {
		if !allow[k] {
			continue
		}
		vs = boundValues(vs)
		switch k {
		case HeaderJustification:
			c.justification = boundString(strings.Join(vs, " "))
		case HeaderTicket:
			c.ticket = boundString(strings.Join(vs, " "))
		default:
			c.metadata[k] = vs
			l := make([]*ast.Term, len(vs))
			for i, v := range vs {
				l[i] = ast.StringTerm(v)
			}
			kvs = append(kvs, [2]*ast.Term{ast.StringTerm(k), ast.ArrayTerm(l...)})
		}
	}
	c.mdInput = ast.NewObject(kvs...)
}

// boundValues keeps values up to maxHeaderBytes in all (see maxHeaderBytes).
func boundValues(vs []string) []string {
	n := 0
	for i, v := range vs {
		if n+len(v) > maxHeaderBytes {
			out := append(make([]string, 0, i+1), vs[:i]...)
			return append(out, textcut.Cut(v, maxHeaderBytes-n))
		}
		n += len(v)
	}
	return vs
}

// boundString cuts s to maxHeaderBytes.
func boundString(s string) string { return textcut.Cut(s, maxHeaderBytes) }
