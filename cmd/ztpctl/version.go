package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/internal/version"
)

// serverVersion is the proxy's build as its control API reports it.
type serverVersion struct {
	Address  string `json:"address"`
	Version  string `json:"version"`
	Revision string `json:"revision"`
}

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print ztpctl's version, and the proxy's with --server",
		Long: `version prints ztpctl's build: release version, VCS revision and Go
toolchain. When --server (or ZTP_SERVER) is given, it also asks that proxy for
its build (control API Policy.Version, with your credentials) and fails when
the proxy cannot be reached.`,
		Example: `  ztpctl version
  ztpctl version --server ztp.example.org:7443 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := struct {
				Client version.Info   `json:"client"`
				Server *serverVersion `json:"server,omitempty"`
			}{Client: version.Get()}
			var serverErr error
			if cmd.Flag("server").Changed || os.Getenv("ZTP_SERVER") != "" {
				resp, err := callProxy(cmd, g, "server version", func(ctx context.Context, conn *grpc.ClientConn) (*ztpv1.PolicyVersionResponse, error) {
					return ztpv1.NewPolicyClient(conn).Version(ctx, &ztpv1.PolicyVersionRequest{})
				})
				if err != nil {
					serverErr = err
				} else {
					out.Server = &serverVersion{Address: g.server, Version: resp.GetServerVersion(), Revision: resp.GetServerRevision()}
					if out.Server.Version == "" { // a proxy from before the field
						out.Server.Version, out.Server.Revision = "unknown", "unknown"
					}
				}
			}
			w := cmd.OutOrStdout()
			if g.output == "json" {
				if err := printJSON(w, out); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(w, "Client: ztpctl", out.Client)
				if s := out.Server; s != nil {
					fmt.Fprintf(w, "Server: ztp-proxy %s (revision %s) at %s\n", s.Version, s.Revision, s.Address)
				}
			}
			return serverErr
		},
	}
}
