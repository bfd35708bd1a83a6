package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ztp-dev/ztp/internal/version"
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
		Version:       version.Get().String(), // --version
	}
	root.SetVersionTemplate("ztp-proxy {{.Version}}\n")
	root.AddCommand(newServeCommand(), newValidateCommand(), newVersionCommand())
	return root
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version, VCS revision and Go toolchain of this build",
		Example: "  ztp-proxy version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "ztp-proxy", version.Get())
			return err
		},
	}
}
