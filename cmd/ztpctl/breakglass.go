package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
)

func newBreakglassCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "breakglass",
		Aliases: []string{"bg"},
		Short:   "Request, approve and revoke time-boxed emergency grants",
		Long: `Break-glass grants let a human make calls that policy "deny" rules would refuse,
for a limited time and scope, after approval by other humans of
breakglass.approver_groups. "forbid" rules still hold. Every state change and
every call made under a grant is in the audit log with the grant id.`,
	}
	cmd.AddCommand(
		newBreakglassRequestCommand(g),
		newBreakglassActionCommand(g, "approve", "Approve a pending grant (approver groups only; not your own)",
			"  ztpctl breakglass approve bg-4f1c2a9b0d --comment \"checked the incident\""),
		newBreakglassActionCommand(g, "deny", "Deny a pending grant (approver groups only)",
			"  ztpctl breakglass deny bg-4f1c2a9b0d --comment \"use the runbook instead\""),
		newBreakglassActionCommand(g, "revoke", "End a pending or active grant (its requester or an approver)",
			"  ztpctl breakglass revoke bg-4f1c2a9b0d --comment \"fixed\""),
		newBreakglassListCommand(g),
		newBreakglassShowCommand(g),
	)
	return cmd
}

type breakglassRequestOptions struct {
	reason   string
	ticket   string
	duration time.Duration
	scope    []string
}

func newBreakglassRequestCommand(g *globalOptions) *cobra.Command {
	o := &breakglassRequestOptions{}
	cmd := &cobra.Command{
		Use:   "request --reason TEXT [--ticket ID] [--duration D] [--scope GLOB]...",
		Short: "Request a grant for yourself; prints its id on the first line",
		Long: `Request a break-glass grant for the calling human. The grant id is printed alone
on the first line of standard output (with --output json: an object with "id").
With breakglass.approvals_required 0 the grant is active at once; otherwise it is
pending until other humans of breakglass.approver_groups approve it.

--duration defaults to breakglass.max_duration; a longer one is refused.
--scope takes full-method globs (path.Match: '*' does not cross '/'); without
it the grant covers every method.`,
		Example: `  ztpctl breakglass request --reason "INC-4711 etcd quorum loss" --ticket INC-4711 \
      --duration 30m --scope '/etcdserverpb.Maintenance/*'
  ID=$(ztpctl breakglass request --reason "INC-4711" | head -1)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(o.reason) == "" {
				return usageError(fmt.Errorf("--reason is required: say what is broken and why you need access"))
			}
			if o.duration < 0 {
				return usageError(fmt.Errorf("--duration must be positive, got %s", o.duration))
			}
			req := &ztpv1.RequestGrantRequest{Reason: o.reason, Ticket: o.ticket, Scope: o.scope}
			if o.duration > 0 {
				req.Duration = durationpb.New(o.duration)
			}
			return g.grantCall(cmd, "breakglass request", func(ctx context.Context, c ztpv1.BreakGlassClient) (*ztpv1.Grant, error) {
				return c.RequestGrant(ctx, req)
			}, func(w io.Writer, gr *ztpv1.Grant) {
				fmt.Fprintln(w, gr.GetId())
				fmt.Fprintln(w, grantSummary(gr))
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.reason, "reason", "", "why you need access (required; recorded with every call)")
	f.StringVar(&o.ticket, "ticket", "", "incident or change ticket")
	f.DurationVar(&o.duration, "duration", 0, "how long the grant lasts once active (default: breakglass.max_duration)")
	f.StringArrayVar(&o.scope, "scope", nil, "full-method glob the grant covers, e.g. '/etcdserverpb.Maintenance/*' (repeatable; default: every method)")
	return cmd
}

func newBreakglassActionCommand(g *globalOptions, verb, short, example string) *cobra.Command {
	var comment string
	cmd := &cobra.Command{
		Use:     verb + " GRANT_ID [--comment TEXT]",
		Short:   short,
		Example: example,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			action := &ztpv1.GrantAction{Id: args[0], Comment: comment}
			return g.grantCall(cmd, "breakglass "+verb, func(ctx context.Context, c ztpv1.BreakGlassClient) (*ztpv1.Grant, error) {
				switch verb {
				case "approve":
					return c.ApproveGrant(ctx, action)
				case "deny":
					return c.DenyGrant(ctx, action)
				default:
					return c.RevokeGrant(ctx, action)
				}
			}, func(w io.Writer, gr *ztpv1.Grant) {
				fmt.Fprintf(w, "%s %s\n", gr.GetId(), grantSummary(gr))
			})
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "recorded with the "+verb+" in the audit log")
	return cmd
}

func newBreakglassShowCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "show GRANT_ID",
		Short:   "Show one grant in full",
		Example: "  ztpctl breakglass show bg-4f1c2a9b0d\n  ztpctl breakglass show bg-4f1c2a9b0d -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.grantCall(cmd, "breakglass show", func(ctx context.Context, c ztpv1.BreakGlassClient) (*ztpv1.Grant, error) {
				return c.GetGrant(ctx, &ztpv1.GrantAction{Id: args[0]})
			}, printGrant)
		},
	}
}

func newBreakglassListCommand(g *globalOptions) *cobra.Command {
	var state string
	cmd := &cobra.Command{
		Use:   "list [--state STATE]",
		Short: "List grants (oldest first)",
		Example: `  ztpctl breakglass list --state active
  ztpctl breakglass list -o json | jq -r '.grants[] | select(.state == "pending") | .id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := callProxy(cmd, g, "breakglass list", func(ctx context.Context, conn *grpc.ClientConn) (*ztpv1.ListGrantsResponse, error) {
				return ztpv1.NewBreakGlassClient(conn).ListGrants(ctx, &ztpv1.ListGrantsRequest{State: state})
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if g.output == "json" {
				out := struct {
					Grants []grantJSON `json:"grants"`
				}{Grants: []grantJSON{}}
				for _, gr := range resp.GetGrants() {
					out.Grants = append(out.Grants, toGrantJSON(gr))
				}
				return printJSON(w, out)
			}
			if len(resp.GetGrants()) == 0 {
				fmt.Fprintln(w, "no grants")
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tREQUESTER\tAPPROVALS\tEXPIRES\tSCOPE\tREASON")
			for _, gr := range resp.GetGrants() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", gr.GetId(), gr.GetState(), gr.GetRequester(),
					len(gr.GetApprovals()), gr.GetApprovalsRequired(), tsText(gr.GetExpires(), "-"),
					strings.Join(gr.GetScope(), ","), oneLine(gr.GetReason(), 60))
			}
			return tw.Flush()
		},
	}
	enumFlag(cmd.Flags(), &state, "state", "", "", []string{"pending", "active", "expired", "revoked", "denied"}, "only grants in this state")
	return cmd
}

// grantCall makes one grant-returning call and prints the grant as text
// (with text) or JSON.
func (g *globalOptions) grantCall(cmd *cobra.Command, what string, call func(context.Context, ztpv1.BreakGlassClient) (*ztpv1.Grant, error), text func(io.Writer, *ztpv1.Grant)) error {
	gr, err := callProxy(cmd, g, what, func(ctx context.Context, conn *grpc.ClientConn) (*ztpv1.Grant, error) {
		return call(ctx, ztpv1.NewBreakGlassClient(conn))
	})
	if err != nil {
		return err
	}
	if g.output == "json" {
		return printJSON(cmd.OutOrStdout(), toGrantJSON(gr))
	}
	text(cmd.OutOrStdout(), gr)
	return nil
}

// grantSummary says in one line where a grant stands and what comes next.
func grantSummary(gr *ztpv1.Grant) string {
	switch gr.GetState() {
	case "pending":
		return fmt.Sprintf("pending: %d of %d approvals; an approver runs: ztpctl breakglass approve %s",
			len(gr.GetApprovals()), gr.GetApprovalsRequired(), gr.GetId())
	case "active":
		return fmt.Sprintf("active until %s (%s), scope %s", tsText(gr.GetExpires(), "?"),
			gr.GetDuration().AsDuration(), strings.Join(gr.GetScope(), " "))
	default:
		by := ""
		if gr.GetEndedBy() != "" {
			by = " by " + gr.GetEndedBy()
		}
		return fmt.Sprintf("%s at %s%s", gr.GetState(), tsText(gr.GetEnded(), "?"), by)
	}
}

func printGrant(w io.Writer, gr *ztpv1.Grant) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("id", gr.GetId())
	row("state", gr.GetState())
	row("requester", gr.GetRequester())
	row("reason", gr.GetReason())
	row("ticket", gr.GetTicket())
	row("scope", strings.Join(gr.GetScope(), " "))
	row("duration", gr.GetDuration().AsDuration().String())
	row("approvals", fmt.Sprintf("%d of %d", len(gr.GetApprovals()), gr.GetApprovalsRequired()))
	for _, a := range gr.GetApprovals() {
		c := ""
		if a.GetComment() != "" {
			c = fmt.Sprintf(" (%q)", a.GetComment())
		}
		row("  approved by", fmt.Sprintf("%s at %s%s", a.GetApprover(), tsText(a.GetTime(), "?"), c))
	}
	row("created", tsText(gr.GetCreated(), ""))
	row("activated", tsText(gr.GetActivated(), ""))
	row("expires", tsText(gr.GetExpires(), ""))
	row("ended", tsText(gr.GetEnded(), ""))
	row("ended by", gr.GetEndedBy())
	tw.Flush()
}

// grantJSON is the --output json form of a grant: snake_case keys, RFC 3339
// UTC times, the duration as Go prints it ("30m0s").
type grantJSON struct {
	ID                string         `json:"id"`
	State             string         `json:"state"`
	Requester         string         `json:"requester"`
	Reason            string         `json:"reason"`
	Ticket            string         `json:"ticket,omitempty"`
	Scope             []string       `json:"scope"`
	Duration          string         `json:"duration"`
	ApprovalsRequired int32          `json:"approvals_required"`
	Approvals         []approvalJSON `json:"approvals"`
	Created           *time.Time     `json:"created,omitempty"`
	Activated         *time.Time     `json:"activated,omitempty"`
	Expires           *time.Time     `json:"expires,omitempty"`
	Ended             *time.Time     `json:"ended,omitempty"`
	EndedBy           string         `json:"ended_by,omitempty"`
}

type approvalJSON struct {
	Approver string     `json:"approver"`
	Time     *time.Time `json:"time,omitempty"`
	Comment  string     `json:"comment,omitempty"`
}

func toGrantJSON(gr *ztpv1.Grant) grantJSON {
	out := grantJSON{
		ID: gr.GetId(), State: gr.GetState(), Requester: gr.GetRequester(), Reason: gr.GetReason(),
		Ticket: gr.GetTicket(), Scope: gr.GetScope(), Duration: gr.GetDuration().AsDuration().String(),
		ApprovalsRequired: gr.GetApprovalsRequired(), Approvals: []approvalJSON{},
		Created: tsPtr(gr.GetCreated()), Activated: tsPtr(gr.GetActivated()), Expires: tsPtr(gr.GetExpires()),
		Ended: tsPtr(gr.GetEnded()), EndedBy: gr.GetEndedBy(),
	}
	if out.Scope == nil {
		out.Scope = []string{}
	}
	for _, a := range gr.GetApprovals() {
		out.Approvals = append(out.Approvals, approvalJSON{Approver: a.GetApprover(), Time: tsPtr(a.GetTime()), Comment: a.GetComment()})
	}
	return out
}

func tsPtr(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime().UTC()
	return &t
}

func tsText(ts *timestamppb.Timestamp, none string) string {
	if ts == nil {
		return none
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// oneLine shortens s for a table cell.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}
