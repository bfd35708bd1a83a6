package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/decode"
	"github.com/ztp-dev/ztp/policy"
)

// ---- policy input ---------------------------------------------------------------------

type policyInputOptions struct {
	descriptors   string
	method        string
	request       string
	requestBin    string
	upstream      string
	principal     string
	kind          string
	groups        []string
	authn         string
	metadata      []string
	justification string
	ticket        string
	messageIndex  int
	now           func() time.Time
}

func newPolicyInputCommand(g *globalOptions) *cobra.Command {
	o := &policyInputOptions{now: time.Now}
	cmd := &cobra.Command{
		Use:   "input --descriptors FILE --method /pkg.Service/Method (--request JSON|- | --request-bin FILE)",
		Short: "Build the policy input the proxy would evaluate for one request, without a proxy",
		Long: `Decode one request with the upstream's descriptors (a .protoset file) exactly as
ztp-proxy decodes it, and print the policy input document the proxy would evaluate:
the place to start writing a rule, with no proxy, no backend and nothing forwarded.

The request is given in its protojson form (--request, the shape grpcurl prints and
accepts; "-" reads standard input) or as the raw bytes of the protobuf message
(--request-bin, e.g. captured from a client). A JSON request is first encoded to
protobuf bytes, so what is printed is what the proxy makes of those bytes: fields
left at their default value, unknown fields and Any type URLs appear as the proxy
shows them, not as they were written. The caller is described by flags (--principal,
--kind, --group, --metadata, --justification, --ticket).

Pipe the result into 'ztpctl policy eval --input -' to see the decision.`,
		Example: `  ztpctl policy input --descriptors examples/etcd/etcd.protoset \
    --method /etcdserverpb.KV/DeleteRange --request '{"key":"Lw==","rangeEnd":"MA=="}' \
    --principal spiffe://example.org/ns/prod/sa/deployer --kind automation --group deployers |
    ztpctl policy eval --policy examples/etcd/policies --input - --explain`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd, g) },
	}
	f := cmd.Flags()
	f.StringVar(&o.descriptors, "descriptors", "", "the upstream's FileDescriptorSet (.protoset)")
	f.StringVar(&o.method, "method", "", "full method name, /package.Service/Method")
	f.StringVar(&o.request, "request", "", `request in protojson form, "-" for standard input`)
	f.StringVar(&o.requestBin, "request-bin", "", "file holding the request's protobuf bytes")
	f.StringVar(&o.upstream, "upstream", "", "input.upstream: the upstream's name in ztp.yaml")
	f.StringVar(&o.principal, "principal", "", "input.principal.id")
	enumFlag(f, &o.kind, "kind", "", "", []string{"automation", "human"}, "input.principal.kind")
	f.StringArrayVar(&o.groups, "group", nil, "input.principal.groups (repeatable)")
	enumFlag(f, &o.authn, "authn", "", "mtls", []string{"mtls", "jwt"}, "input.principal.authn")
	f.StringArrayVar(&o.metadata, "metadata", nil, "request metadata KEY=VALUE (repeatable)")
	f.StringVar(&o.justification, "justification", "", "the caller's x-ztp-justification")
	f.StringVar(&o.ticket, "ticket", "", "the caller's x-ztp-ticket")
	f.IntVar(&o.messageIndex, "message-index", 0, "input.stream.message_index (the message's place in its stream)")
	cmd.MarkFlagRequired("descriptors")
	cmd.MarkFlagRequired("method")
	return cmd
}

func (o *policyInputOptions) run(cmd *cobra.Command, g *globalOptions) error {
	if (o.request == "") == (o.requestBin == "") {
		return usageError(errors.New("give the request with exactly one of --request and --request-bin"))
	}
	if o.messageIndex < 0 {
		return usageError(fmt.Errorf("--message-index must not be negative, got %d", o.messageIndex))
	}
	ps, err := decode.LoadProtoset(o.descriptors)
	if err != nil {
		return fmt.Errorf("--descriptors: %w", err)
	}
	ctx := policyCmdContext(cmd)
	md, err := ps.FindMethod(ctx, o.method)
	if err != nil {
		return fmt.Errorf("--method: %w", err)
	}
	msg, err := o.requestBytes(ctx, cmd, ps)
	if err != nil {
		return err
	}
	rec := &audit.Record{
		Time:          o.now().UTC(),
		Type:          audit.TypeRequest,
		Principal:     &audit.Principal{ID: o.principal, Kind: o.kind, Groups: o.groups, Authn: o.authn},
		Method:        o.method,
		Upstream:      o.upstream,
		MessageIndex:  o.messageIndex,
		Justification: o.justification,
		Ticket:        o.ticket,
	}
	if rec.Metadata, err = parseMetadata(o.metadata); err != nil {
		return err
	}
	for k := range rec.Metadata {
		if !slices.Contains(config.DefaultAuditHeaders, k) {
			fmt.Fprintf(cmd.ErrOrStderr(), "note: --metadata %s: the proxy passes a header to policies only when audit.headers lists it (default: %s)\n",
				k, strings.Join(config.DefaultAuditHeaders, ", "))
		}
	}
	req, unknown, _, derr := decode.NewDecoder(ps).DecodeUnknown(ctx, o.method, msg)
	switch {
	case derr == nil:
		if req == nil {
			req = map[string]any{}
		}
		if rec.Request, err = json.Marshal(req); err != nil {
			return fmt.Errorf("request: %w", err)
		}
		rec.RequestDecoded = true
	case errors.Is(derr, decode.ErrAmbiguous):
		fmt.Fprintf(cmd.ErrOrStderr(), "note: the proxy refuses this request with INVALID_ARGUMENT before any policy runs, unless the upstream sets allow_duplicate_fields (%v)\n", derr)
		rec.Detail = decode.Reason(derr)
	default:
		fmt.Fprintf(cmd.ErrOrStderr(), "note: the proxy could not decode this request (%v): input.request is null\n", derr)
		rec.Detail = decode.Reason(derr)
	}
	// The proxy and replay build the input from the same fields; this is replay's
	// builder fed with what the proxy would have recorded.
	input, err := policy.RecordInput(rec, md.IsStreamingClient(), md.IsStreamingServer())
	if err != nil {
		return err
	}
	if len(unknown) > 0 {
		l := make([]any, len(unknown))
		for i, u := range unknown {
			l[i] = u
		}
		input["request_unknown_fields"] = l
	}
	return printJSON(cmd.OutOrStdout(), input)
}

// requestBytes reads the request as the protobuf bytes a client would send.
func (o *policyInputOptions) requestBytes(ctx context.Context, cmd *cobra.Command, ps *decode.Protoset) ([]byte, error) {
	if o.requestBin != "" {
		b, err := os.ReadFile(o.requestBin)
		if err != nil {
			return nil, fmt.Errorf("--request-bin: %w", err)
		}
		return b, nil
	}
	js := []byte(o.request)
	if o.request == "-" {
		var err error
		if js, err = io.ReadAll(cmd.InOrStdin()); err != nil {
			return nil, fmt.Errorf("--request -: %w", err)
		}
	}
	b, err := decode.EncodeJSON(ctx, ps, o.method, js)
	if err != nil {
		return nil, fmt.Errorf("--request: %w", err)
	}
	return b, nil
}

// parseMetadata turns KEY=VALUE flags into metadata as the proxy passes it: keys
// lower-cased, repeated keys collected in order.
func parseMetadata(kvs []string) (map[string][]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	md := map[string][]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError(fmt.Errorf("--metadata %q: want KEY=VALUE", kv))
		}
		k = strings.ToLower(k)
		md[k] = append(md[k], v)
	}
	return md, nil
}

// inputKeys are the top-level keys the proxy sets in every policy input.
var inputKeys = []string{
	"breakglass", "justification", "metadata", "method", "principal", "request", "request_decoded",
	"request_undecoded_reason", "request_unknown_fields", "rpc", "service", "stream", "ticket", "time", "upstream",
}

// asPolicyInput returns doc as a policy input: an audit request record is turned into
// the input the proxy evaluated for it; anything else is used as given, with a warning
// for each key the proxy always sets that doc lacks and each key it never sets.
func asPolicyInput(doc map[string]any) (map[string]any, []string, error) {
	var warnings []string
	if _, seq := doc["seq"]; seq {
		if _, typ := doc["type"]; typ {
			b, err := json.Marshal(doc)
			if err != nil {
				return nil, nil, fmt.Errorf("--input: %w", err)
			}
			var rec audit.Record
			if err := json.Unmarshal(b, &rec); err != nil {
				return nil, nil, fmt.Errorf("--input: looks like an audit record but does not parse as one: %w", err)
			}
			if rec.Type != audit.TypeRequest {
				return nil, nil, fmt.Errorf("--input: audit record seq %d is a %q record; only request records carry a decision's input", rec.Seq, rec.Type)
			}
			in, err := policy.RecordInput(&rec, false, false)
			if err != nil {
				return nil, nil, fmt.Errorf("--input: %w", err)
			}
			warnings = append(warnings, fmt.Sprintf("the input is audit record seq %d: evaluating the input rebuilt from it, as 'policy replay' does (stream.client_streaming/server_streaming read false)", rec.Seq))
			return in, warnings, nil
		}
	}
	var missing, unknown []string
	for _, k := range inputKeys {
		if _, ok := doc[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k := range doc {
		if !slices.Contains(inputKeys, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	if len(missing) > 0 {
		warnings = append(warnings, fmt.Sprintf("the input lacks %s, which the proxy always sets: rules reading them are undefined here (build a complete input with 'ztpctl policy input')", strings.Join(missing, ", ")))
	}
	if len(unknown) > 0 {
		warnings = append(warnings, fmt.Sprintf("the input has %s, which the proxy never sets", strings.Join(unknown, ", ")))
	}
	return doc, warnings, nil
}

// writeExplain prints --explain's rule values, one rule a line, and the trace.
func writeExplain(w io.Writer, rules []policy.RuleValue, trace string) {
	fmt.Fprintln(w, "\nrules of package ztp for this input:")
	for _, r := range rules {
		switch {
		case r.Error != "":
			fmt.Fprintf(w, "  %s: error: %s\n", r.Name, r.Error)
		case !r.Defined:
			fmt.Fprintf(w, "  %s: undefined\n", r.Name)
		default:
			b, err := json.Marshal(r.Value)
			if err != nil {
				b = []byte(fmt.Sprint(r.Value))
			}
			fmt.Fprintf(w, "  %s = %s\n", r.Name, b)
		}
	}
	if trace != "" {
		fmt.Fprintln(w, "\ntrace:")
		fmt.Fprint(w, trace)
	}
}
