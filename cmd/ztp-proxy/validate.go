package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/decode"
	"github.com/ztp-dev/ztp/policy"
	"github.com/ztp-dev/ztp/proxy"
)

type validateOptions struct {
	config string
}

func newValidateCommand() *cobra.Command {
	o := &validateOptions{}
	cmd := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check a config file, its policies and descriptor sets without serving",
		Example: `  # in CI, before rolling out a config change
  ztp-proxy validate --config /etc/ztp/ztp.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(o.config)
			if err != nil {
				return err
			}
			paths := make([]string, len(cfg.Policy.Paths))
			for i, p := range cfg.Policy.Paths {
				paths[i] = cfg.Resolve(p)
			}
			// The same check as start-up: the policy compiles and passes its own tests.
			eng, _, err := policy.LoadTested(cmd.Context(), policy.Options{Paths: paths, Config: cfg.PolicyData()})
			if err != nil {
				return fmt.Errorf("policy: %w", err)
			}
			var sets []*decode.Protoset
			for i, u := range cfg.Upstreams {
				if u.Descriptors == "" {
					continue
				}
				ps, err := decode.LoadProtoset(cfg.Resolve(u.Descriptors))
				if err != nil {
					return fmt.Errorf("upstreams[%d].descriptors: %w", i, err)
				}
				sets = append(sets, ps)
			}
			if err := proxy.CheckRedact(cfg.Audit.Redact, sets); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (policy %s, %d upstreams)\n", o.config, eng.Version(), len(cfg.Upstreams))
			return nil
		},
	}
	cmd.Flags().StringVarP(&o.config, "config", "c", "ztp.yaml", "config file")
	return cmd
}
