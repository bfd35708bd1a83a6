package main

import (
	"fmt"

	"github.com/spf13/cobra"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
)

func newPolicyCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with ztp policies",
	}
	cmd.AddCommand(newPolicyVersionCommand(g))
	return cmd
}

func newPolicyVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the policy version active in the running proxy",
		Example: `  ztpctl --server proxy:7443 --cacert ca.pem --cert me.pem --key me-key.pem policy version
  ztpctl policy version -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkOutput(); err != nil {
				return err
			}
			conn, err := g.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := g.context(cmd.Context())
			defer cancel()
			v, err := ztpv1.NewPolicyClient(conn).Version(ctx, &ztpv1.PolicyVersionRequest{})
			if err != nil {
				return rpcError("policy version", err)
			}
			if g.output == "json" {
				return printJSON(cmd.OutOrStdout(), map[string]any{
					"version": v.GetVersion(), "mode": v.GetMode(), "loaded": v.GetLoaded().AsTime(),
				})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s (mode %s, loaded %s)\n", v.GetVersion(), v.GetMode(), v.GetLoaded().AsTime().Format("2006-01-02T15:04:05Z07:00"))
			return nil
		},
	}
}
