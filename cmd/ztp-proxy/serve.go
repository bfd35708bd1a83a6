package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/internal/version"
	"github.com/ztp-dev/ztp/proxy"
)

type serveOptions struct {
	config       string
	drainTimeout time.Duration
	logLevel     string
}

func newServeCommand() *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the proxy",
		Example: `  ztp-proxy serve --config /etc/ztp/ztp.yaml

  # then point a client at it, e.g. etcdctl:
  etcdctl --endpoints=127.0.0.1:7443 --cacert ca.pem --cert me.pem --key me-key.pem get foo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context()) },
	}
	cmd.Flags().StringVarP(&o.config, "config", "c", "ztp.yaml", "config file")
	cmd.Flags().DurationVar(&o.drainTimeout, "drain-timeout", 15*time.Second, "on SIGTERM/SIGINT, how long calls in flight may finish before they are cut")
	cmd.Flags().StringVar(&o.logLevel, "log-level", "", "debug | info | warn | error (default: log.level of the config)")
	return cmd
}

func (o *serveOptions) run(ctx context.Context) error {
	cfg, err := config.Load(o.config)
	if err != nil {
		return err
	}
	if o.logLevel == "" {
		o.logLevel = cfg.Log.Level
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	if cfg.Log.Format == "json" {
		log = slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	} else {
		log = slog.New(slog.NewTextHandler(os.Stderr, hopts))
	}
	if ctx == nil {
		ctx = context.Background()
	}
	srv, err := proxy.New(ctx, cfg, proxy.Options{Logger: log})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		srv.Shutdown(context.Background())
		return fmt.Errorf("listen: %w", err)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	log.Info("serving", "listen", lis.Addr().String(), "config", cfg.File, "version", version.Get().String())

	for stop := false; !stop; {
		select {
		case err := <-served:
			srv.Shutdown(context.Background())
			return fmt.Errorf("serve: %w", err)
		case <-hups:
			// A bad config is reported and ignored: the running one stays in force.
			if err := srv.Reload(ctx); err != nil {
				log.Error("reload rejected; keeping the running config", "err", err)
			} else {
				log.Info("reloaded", "config", cfg.File)
			}
		case sig := <-sigs:
			log.Info("draining", "signal", sig.String(), "timeout", o.drainTimeout)
			stop = true
		}
	}
	dctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	<-served
	log.Info("stopped")
	return nil
}
