package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
)

func newRateLimitCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ratelimit",
		Short: "Inspect rate limits and change budgets of the running proxy",
		Example: `  ztpctl ratelimit status
  ztpctl ratelimit status --principal spiffe://example.org/user/alice -o json`,
	}
	cmd.AddCommand(newRateLimitStatusCommand(g))
	return cmd
}

type rateLimitStatusOptions struct {
	principal string
	limit     uint32
}

// bucketJSON is one bucket in --output json.
type bucketJSON struct {
	Kind      string  `json:"kind"`
	Rule      string  `json:"rule"`
	Key       string  `json:"key"`
	Tokens    float64 `json:"tokens"`
	Burst     float64 `json:"burst"`
	PerSecond float64 `json:"per_second"`
}

func newRateLimitStatusCommand(g *globalOptions) *cobra.Command {
	o := &rateLimitStatusOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the tokens left in the tracked rate-limit and change-budget buckets",
		Long: `Shows the buckets the proxy tracks: one per principal and rate_limits rule
("rate"), one per change-budget key ("budget"). Only buckets that were used
recently are tracked; a principal or key without one has a full bucket. A key of
"*" is a rule's shared bucket, used by principals or keys beyond the proxy's
tracking capacity. Every authenticated principal may look.

At most --limit buckets are shown (1000 at most), the most depleted ones.`,
		Example: `  ztpctl ratelimit status
  ztpctl ratelimit status --principal spiffe://example.org/ns/prod/sa/deployer
  ztpctl ratelimit status -o json | jq '.buckets[] | select(.tokens < 1)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := callProxy(cmd, g, "ratelimit status", func(ctx context.Context, conn *grpc.ClientConn) (*ztpv1.RateLimitStatusResponse, error) {
				return ztpv1.NewRateLimitClient(conn).Status(ctx, &ztpv1.RateLimitStatusRequest{Principal: o.principal, Limit: o.limit})
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if g.output == "json" {
				out := struct {
					Buckets []bucketJSON `json:"buckets"`
					Total   uint64       `json:"total"`
				}{Buckets: []bucketJSON{}, Total: resp.GetTotal()}
				for _, b := range resp.GetBuckets() {
					out.Buckets = append(out.Buckets, bucketJSON{Kind: b.GetKind(), Rule: b.GetRule(), Key: b.GetKey(), Tokens: b.GetTokens(), Burst: b.GetBurst(), PerSecond: b.GetPerSecond()})
				}
				return printJSON(w, out)
			}
			if len(resp.GetBuckets()) == 0 {
				who := ""
				if o.principal != "" {
					who = " for " + o.principal
				}
				fmt.Fprintf(w, "no tracked buckets%s: every limit is at its full burst\n", who)
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tRULE\tKEY\tTOKENS\tLIMIT")
			for _, b := range resp.GetBuckets() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.GetKind(), b.GetRule(), b.GetKey(), bucketTokens(b.GetTokens()), bucketLimit(b))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if n := uint64(len(resp.GetBuckets())); resp.GetTotal() > n {
				fmt.Fprintf(w, "showing the %d most depleted of %d buckets (--limit)\n", n, resp.GetTotal())
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.principal, "principal", "", "only this principal's rate-limit buckets (exact id)")
	f.Uint32Var(&o.limit, "limit", 0, "show at most this many buckets (0: the proxy's maximum, 1000)")
	return cmd
}

// bucketTokens shows a level rounded down to two decimals: never more than is there.
func bucketTokens(x float64) string {
	return strconv.FormatFloat(math.Floor(x*100)/100, 'f', -1, 64)
}

// bucketLimit shows a rate rule as "burst 10, 5/s" and a budget as "5 per 1h0m0s", the
// way each is configured.
func bucketLimit(b *ztpv1.Bucket) string {
	g := func(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }
	if b.GetKind() == "budget" && b.GetPerSecond() > 0 {
		per := time.Duration(math.Round(b.GetBurst() / b.GetPerSecond() * float64(time.Second)))
		return g(b.GetBurst()) + " per " + per.Round(time.Millisecond).String()
	}
	return "burst " + g(b.GetBurst()) + ", " + g(b.GetPerSecond()) + "/s"
}
