package main

import (
	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "ztp-proxy",
		Short: "Safe proxy for production gRPC admin APIs",
		Long: `ztp-proxy authenticates every caller (mTLS), decides each request with OPA
policies, writes a durable audit record before forwarding, and passes the
call through to the upstream unchanged.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCommand(), newValidateCommand())
	return root
}
