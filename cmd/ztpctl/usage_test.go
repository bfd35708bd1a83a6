package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// walkCommands calls fn for every command of the tree under root.
func walkCommands(root *cobra.Command, fn func(*cobra.Command)) {
	fn(root)
	for _, c := range root.Commands() {
		walkCommands(c, fn)
	}
}

// pathArgs is cmd's path without the root ("audit export" → [audit export]).
func pathArgs(cmd *cobra.Command) []string {
	return strings.Fields(cmd.CommandPath())[1:]
}

// TestEveryEnumFlagRejectsBogusValue walks the whole command tree: every flag
// restricted to a fixed set of values, on every command that has it (the
// inherited -o included), refuses a value outside the set as a usage error
// naming the flag and the allowed values — before any work is done.
func TestEveryEnumFlagRejectsBogusValue(t *testing.T) {
	seen := map[string]bool{}
	walkCommands(newRootCommand(), func(cmd *cobra.Command) {
		if cmd.HasSubCommands() || cmd.Name() == "help" || cmd.Name() == "completion" {
			return
		}
		cmd.InheritedFlags() // merges the persistent flags into Flags()
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			ev, ok := f.Value.(*enumValue)
			if !ok {
				return
			}
			seen[f.Name] = true
			args := append(pathArgs(cmd), "--"+f.Name+"=bogus")
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				out, _, err := runCtl(t, "", args...)
				if exitCode(err) != exitUsage || !strings.Contains(err.Error(), "--"+f.Name+`" flag`) ||
					!strings.Contains(err.Error(), strings.Join(ev.allowed, " | ")) {
					t.Errorf("ztpctl %v = %v (exit %d), want exit %d naming --%s and %v", args, err, exitCode(err), exitUsage, f.Name, ev.allowed)
				}
				if out != "" {
					t.Errorf("ztpctl %v wrote %q; a usage error must do nothing", args, out)
				}
			})
		})
	})
	// The flags the CLI documents as closed sets are all enum flags: a new
	// StringVar for one of them would silently accept typos again.
	for _, name := range []string{"output", "format", "decision", "state", "mode", "explain", "fail-on", "kind", "authn"} {
		if !seen[name] {
			t.Errorf("flag --%s is not an enum flag on any command", name)
		}
	}
}

// TestUnknownSubcommandAtAnyDepth: every group, the root included, refuses an
// unknown subcommand with cobra's message, suggestions, and exit 2, instead
// of printing its help and exiting 0.
func TestUnknownSubcommandAtAnyDepth(t *testing.T) {
	walkCommands(newRootCommand(), func(cmd *cobra.Command) {
		if !cmd.HasSubCommands() {
			return
		}
		args := append(pathArgs(cmd), "bogus")
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, _, err := runCtl(t, "", args...)
			if exitCode(err) != exitUsage || !strings.Contains(err.Error(), `unknown command "bogus" for "`+cmd.CommandPath()+`"`) {
				t.Errorf("ztpctl %v = %v (exit %d), want unknown command, exit %d", args, err, exitCode(err), exitUsage)
			}
		})
		// A group alone still shows its help.
		if out, _, err := runCtl(t, "", pathArgs(cmd)...); err != nil || !strings.Contains(out, "Available Commands") {
			t.Errorf("ztpctl %v = %q, %v; want its help", pathArgs(cmd), out, err)
		}
	})
	_, _, err := runCtl(t, "", "breakglass", "requst")
	if err == nil || !strings.Contains(err.Error(), "Did you mean this?\n\trequest") {
		t.Errorf("ztpctl breakglass requst = %v, want a suggestion of request", err)
	}
}

// TestUsageErrorsExit2 covers the other usage mistakes cobra reports on its
// own: unknown flag, wrong argument count, missing required flag.
func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"audit", "export", "--no-such-flag"},
		{"audit", "export", "extra"},
		{"breakglass", "approve"},
		{"policy", "eval", "--input", "x.json"},
		{"policy", "input", "--method", "/a.B/C"},
		// Flag combinations and values checked by the commands themselves.
		{"audit", "export", "--since", "yesterday-ish"},
		{"audit", "export", "--db", "x.db", "--follow"},
		{"audit", "verify", "--checkpoint", "c.txt"},
		{"breakglass", "request", "--duration", "1h"},
		{"policy", "replay", "--policy", "."},
		{"--cert", "c.pem", "policy", "version"},
		{"tunnel", "--listen", "0.0.0.0:7444"},
	} {
		_, _, err := runCtl(t, "", args...)
		if exitCode(err) != exitUsage {
			t.Errorf("ztpctl %v = %v (exit %d), want exit %d", args, err, exitCode(err), exitUsage)
		}
	}
	// A failure to do the work is exit 1, not usage.
	_, _, err := runCtl(t, "", "--cacert", "/nonexistent/ca.pem", "--token-file", "/dev/null", "policy", "version")
	if err == nil || exitCode(err) != exitError {
		t.Errorf("policy version with a missing CA = %v (exit %d), want exit %d", err, exitCode(err), exitError)
	}
	if exitCode(nil) != exitOK || exitCode(errors.New("x")) != exitError {
		t.Error("exitCode of nil / a plain error")
	}
}

// TestPolicyEvalFailOn: --fail-on turns a verdict into exit 3 after the
// verdict is printed; without it the status never depends on the verdict.
func TestPolicyEvalFailOn(t *testing.T) {
	dir := writePolicyFiles(t, map[string]string{"p.rego": ctlPolicy})
	human := `{"principal": {"id": "spiffe://example.org/user/alice", "kind": "human", "groups": ["sre"]}, "method": "/etcdserverpb.KV/Put", "rpc": "Put", "request": {"key": "Zm9v"}, "request_decoded": true}`
	remove := `{"principal": {"kind": "automation"}, "rpc": "MemberRemove", "request": {"ID": "1"}, "request_decoded": true}`
	tests := []struct {
		input string
		args  []string
		want  int
	}{
		{human, nil, exitOK},
		{human, []string{"--fail-on", "deny"}, exitIntegrity},
		{human, []string{"--fail-on", "any", "-o", "json"}, exitIntegrity},
		{human, []string{"--fail-on", "deny", "--mode", "dryrun"}, exitOK}, // dryrun_deny forwards
		{human, []string{"--fail-on", "any", "--mode", "dryrun"}, exitIntegrity},
		{human, []string{"--fail-on", "deny", "--breakglass", "bg-1"}, exitOK},
		{remove, []string{"--fail-on", "any"}, exitOK},
	}
	for _, tc := range tests {
		args := append([]string{"policy", "eval", "--policy", dir, "--input", "-"}, tc.args...)
		out, _, err := runCtl(t, tc.input, args...)
		if exitCode(err) != tc.want || !strings.Contains(out, "verdict") {
			t.Errorf("ztpctl %v = %q, %v (exit %d), want exit %d after the verdict", args, out, err, exitCode(err), tc.want)
		}
	}
}

// TestHelpAndCompletionRefuseUnknown: cobra's added commands follow the same
// rules (help on an unknown topic, an unknown shell).
func TestHelpAndCompletionRefuseUnknown(t *testing.T) {
	for _, args := range [][]string{{"help", "bogus"}, {"help", "audit", "bogus"}, {"completion", "bogus"}} {
		_, _, err := runCtl(t, "", args...)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), `unknown command "bogus"`) {
			t.Errorf("ztpctl %v = %v (exit %d), want unknown command, exit %d", args, err, exitCode(err), exitUsage)
		}
	}
	if out, _, err := runCtl(t, "", "help", "audit", "export"); err != nil || !strings.Contains(out, "--decision") {
		t.Errorf("ztpctl help audit export = %q, %v", out, err)
	}
}
