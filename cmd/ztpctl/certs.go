package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/pki"
)

// The certs commands mint development certificates so that ztp can be tried
// against a real backend without openssl recipes. They are not a production CA:
// keys are written unencrypted to local files.
func newCertsCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Mint a dev CA and SPIFFE certificates for trying ztp",
		Long: `Mint a development CA, the proxy's server certificate and client certificates
with SPIFFE URI SANs. Keys are written unencrypted (mode 0600): use these to try
ztp, not in production. Existing files are never overwritten without --force.`,
	}
	cmd.AddCommand(newCertsInitCommand(g), newCertsIssueCommand(g), newCertsQuickstartCommand(g))
	return cmd
}

type certsIssueOptions struct {
	dir, caDir, name string
	spiffe, dns, ips []string
	cn               string
	server, client   bool
	validity         time.Duration
	force            bool
}

func newCertsInitCommand(g *globalOptions) *cobra.Command {
	var dir, name string
	var validity time.Duration
	var force bool
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a dev CA (ca.pem, ca-key.pem)",
		Example: `  ztpctl certs init --dir certs
  ztpctl certs init --dir certs --name "staging dev CA" --validity 720h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := refuseOverwrite(force, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")); err != nil {
				return err
			}
			ca, err := pki.NewCA(name, pki.WithValidity(validity))
			if err != nil {
				return err
			}
			if err := ca.WriteFiles(dir, "ca"); err != nil {
				return err
			}
			return reportFiles(cmd, g, []string{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "certs", "directory to write ca.pem and ca-key.pem to")
	cmd.Flags().StringVar(&name, "name", "ztp dev CA", "CA common name")
	cmd.Flags().DurationVar(&validity, "validity", 365*24*time.Hour, "CA validity")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

func newCertsIssueCommand(g *globalOptions) *cobra.Command {
	o := &certsIssueOptions{}
	cmd := &cobra.Command{
		Use:   "issue NAME --spiffe ID [--client] | --dns HOST --server",
		Short: "Issue a leaf certificate (NAME.pem, NAME-key.pem) from the dev CA",
		Example: `  # an automation identity
  ztpctl certs issue deployer --spiffe spiffe://example.org/ns/prod/sa/deployer --client
  # a human
  ztpctl certs issue alice --spiffe spiffe://example.org/user/alice --client
  # the proxy's server certificate
  ztpctl certs issue proxy --dns localhost --ip 127.0.0.1 --server`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.name = args[0]
			if !o.server && !o.client {
				return usageError(errors.New("say what the certificate is for: --client, --server or both"))
			}
			ca, err := pki.LoadCA(filepath.Join(o.caDir, "ca.pem"), filepath.Join(o.caDir, "ca-key.pem"))
			if err != nil {
				return fmt.Errorf("--ca-dir %s: %w (create one with: ztpctl certs init --dir %s)", o.caDir, err, o.caDir)
			}
			files, err := issueLeaf(ca, o)
			if err != nil {
				return err
			}
			return reportFiles(cmd, g, files)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "certs", "directory to write NAME.pem and NAME-key.pem to")
	f.StringVar(&o.caDir, "ca-dir", "certs", "directory holding ca.pem and ca-key.pem")
	f.StringArrayVar(&o.spiffe, "spiffe", nil, "SPIFFE ID for the URI SAN (the principal id)")
	f.StringArrayVar(&o.dns, "dns", nil, "DNS name SAN")
	f.StringArrayVar(&o.ips, "ip", nil, "IP address SAN")
	f.StringVar(&o.cn, "cn", "", "subject common name (default: NAME)")
	f.BoolVar(&o.server, "server", false, "usable as a TLS server certificate")
	f.BoolVar(&o.client, "client", false, "usable as a TLS client certificate")
	f.DurationVar(&o.validity, "validity", 30*24*time.Hour, "certificate validity")
	f.BoolVar(&o.force, "force", false, "overwrite existing files")
	return cmd
}

func issueLeaf(ca *pki.CA, o *certsIssueOptions) ([]string, error) {
	cert, key := filepath.Join(o.dir, o.name+".pem"), filepath.Join(o.dir, o.name+"-key.pem")
	if err := refuseOverwrite(o.force, cert, key); err != nil {
		return nil, err
	}
	var ips []net.IP
	for _, s := range o.ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, usageError(fmt.Errorf("--ip %q: not an IP address", s))
		}
		ips = append(ips, ip)
	}
	cn := o.cn
	if cn == "" {
		cn = o.name
	}
	now := time.Now()
	notAfter := now.Add(o.validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	leaf, err := ca.Issue(pki.LeafOptions{
		CommonName: cn, URIs: o.spiffe, DNSNames: o.dns, IPs: ips,
		Server: o.server, Client: o.client,
		NotBefore: now.Add(-time.Minute), NotAfter: notAfter,
	})
	if err != nil {
		return nil, err
	}
	if err := pki.WriteFiles(o.dir, o.name, leaf); err != nil {
		return nil, err
	}
	return []string{cert, key}, nil
}

func newCertsQuickstartCommand(g *globalOptions) *cobra.Command {
	var dir, domain string
	var force bool
	cmd := &cobra.Command{
		Use:   "quickstart --dir DIR [--trust-domain DOMAIN]",
		Short: "Create a CA, a proxy certificate, example identities and the audit signing key in one go",
		Long: `Create, in DIR: a dev CA; "proxy" (server certificate for localhost and
127.0.0.1); "deployer" (automation: spiffe://DOMAIN/ns/prod/sa/deployer);
"alice" (human: spiffe://DOMAIN/user/alice); "bob" (human approver:
spiffe://DOMAIN/lead/bob) and "bob-user" (the same person's everyday identity,
spiffe://DOMAIN/user/bob: with identity.principals[].person rules the proxy
knows both are bob, so bob cannot approve his own break-glass request); and
audit-ed25519.pem with audit-ed25519.pub, the Ed25519 key that signs audit
checkpoints (audit.signing_key) and its public half for auditors. Match the
identities in ztp.yaml with identity.principals rules such as
"spiffe://DOMAIN/ns/prod/sa/*".`,
		Example: `  ztpctl certs quickstart --dir certs
  ztpctl --cacert certs/ca.pem --cert certs/alice.pem --key certs/alice-key.pem policy version`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var all []string
			for _, n := range []string{"ca", "proxy", "deployer", "alice", "bob", "bob-user"} {
				all = append(all, filepath.Join(dir, n+".pem"), filepath.Join(dir, n+"-key.pem"))
			}
			auditKey := filepath.Join(dir, "audit-ed25519.pem")
			all = append(all, auditKey, pubKeyPath(auditKey))
			if err := refuseOverwrite(force, all...); err != nil {
				return err // checked up front: never leave a half-written set
			}
			ca, err := pki.NewCA("ztp dev CA")
			if err != nil {
				return err
			}
			if err := ca.WriteFiles(dir, "ca"); err != nil {
				return err
			}
			files := []string{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")}
			for _, l := range []certsIssueOptions{
				{name: "proxy", dns: []string{"localhost"}, ips: []string{"127.0.0.1"}, server: true},
				{name: "deployer", spiffe: []string{"spiffe://" + domain + "/ns/prod/sa/deployer"}, client: true},
				{name: "alice", spiffe: []string{"spiffe://" + domain + "/user/alice"}, client: true},
				{name: "bob", spiffe: []string{"spiffe://" + domain + "/lead/bob"}, client: true},
				{name: "bob-user", spiffe: []string{"spiffe://" + domain + "/user/bob"}, client: true},
			} {
				l.dir, l.validity, l.force = dir, 30*24*time.Hour, force
				f, err := issueLeaf(ca, &l)
				if err != nil {
					return err
				}
				files = append(files, f...)
			}
			// The key that signs audit checkpoints: without it the audit log
			// proves only its own consistency (see ztpctl audit verify).
			privPEM, pubPEM, err := audit.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			if err := writeNew(auditKey, privPEM, 0o600, force); err != nil {
				return err
			}
			if err := writeNew(pubKeyPath(auditKey), pubPEM, 0o644, force); err != nil {
				return err
			}
			files = append(files, auditKey, pubKeyPath(auditKey))
			return reportFiles(cmd, g, files)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "certs", "directory to write to")
	cmd.Flags().StringVar(&domain, "trust-domain", "example.org", "SPIFFE trust domain of the identities")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

// refuseOverwrite protects existing keys: losing a CA key is not undoable.
func refuseOverwrite(force bool, paths ...string) error {
	if force {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists; not overwriting it (use --force)", p)
		}
	}
	return nil
}

func reportFiles(cmd *cobra.Command, g *globalOptions, files []string) error {
	if g.output == "json" {
		return printJSON(cmd.OutOrStdout(), map[string]any{"files": files})
	}
	for _, f := range files {
		fmt.Fprintln(cmd.OutOrStdout(), "wrote", f)
	}
	return nil
}
