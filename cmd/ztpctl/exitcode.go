package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit statuses of ztpctl. A script tells "the proxy is down" (1) from "I
// typed it wrong" (2) from "the audit log is damaged" (3) by the status alone.
const (
	exitOK        = 0
	exitError     = 1 // the command could not do its work (proxy unreachable, file missing, …)
	exitUsage     = 2 // bad command, flag or flag value: nothing was done
	exitIntegrity = 3 // the evidence failed its check (audit verify FAIL, damaged file, policy eval --fail-on)
)

// exitCodeError carries the exit status decided where the failure is known.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

func usageError(err error) error     { return &exitCodeError{exitUsage, err} }
func integrityError(err error) error { return &exitCodeError{exitIntegrity, err} }

// exitCode is the status main exits with for err.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ec *exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	return exitError
}

// enumValue is a string flag that accepts only one of a fixed set of values,
// so that a typo ("--decision denied") is refused at parse time instead of
// silently matching nothing.
type enumValue struct {
	p       *string
	allowed []string
}

func (v *enumValue) String() string { return *v.p }
func (v *enumValue) Type() string   { return "string" }
func (v *enumValue) Set(s string) error {
	if !slices.Contains(v.allowed, s) {
		return fmt.Errorf("must be one of %s", strings.Join(v.allowed, " | "))
	}
	*v.p = s
	return nil
}

// enumFlag defines --name (with shorthand short, "" for none) restricted to
// allowed; def is its default (which may be "", meaning unset).
func enumFlag(f *pflag.FlagSet, p *string, name, short, def string, allowed []string, usage string) {
	*p = def
	f.VarP(&enumValue{p: p, allowed: allowed}, name, short, usage+" ("+strings.Join(allowed, " | ")+")")
}

// enforceUsageRules makes every usage mistake anywhere in the tree a usage
// error (exit 2): unknown subcommands under any group (cobra only checks the
// root), bad flags and flag values, wrong argument counts, missing required
// flags.
func enforceUsageRules(root *cobra.Command) {
	// cobra's own help command prints "Unknown help topic" and succeeds.
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil {
				return usageError(err)
			}
			if len(rest) > 0 {
				return runGroup(cmd, rest)
			}
			return cmd.Help()
		},
	})
	// cobra adds these at Execute; added now, the walk below covers them.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = cobra.ArbitraryArgs
			c.RunE = runGroup
		} else if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					return usageError(err)
				}
				return nil
			}
		}
		// cobra checks required flags after PreRunE; checking them here
		// first classifies the error.
		pre := c.PreRunE
		c.PreRunE = func(cmd *cobra.Command, a []string) error {
			if err := cmd.ValidateRequiredFlags(); err != nil {
				return usageError(err)
			}
			if err := cmd.ValidateFlagGroups(); err != nil {
				return usageError(err)
			}
			if pre != nil {
				return pre(cmd, a)
			}
			return nil
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// runGroup is the body of a command that only groups others: alone it shows
// its help; with an argument it names the unknown subcommand.
func runGroup(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's default, applied only on its own path
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return usageError(errors.New(msg + "\n\nRun '" + cmd.CommandPath() + " --help' for usage."))
}
