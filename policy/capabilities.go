package policy

import (
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// removedBuiltins are the built-ins a ztp policy may not call. A decision that depends on the
// network or on the OPA runtime would make the proxy's behaviour depend on something other
// than the request, the loaded files and the clock, would let a policy exfiltrate request
// contents, and could not be replayed against the audit log.
var removedBuiltins = []string{
	ast.HTTPSend.Name,        // http.send
	ast.NetLookupIPAddr.Name, // net.lookup_ip_addr
	ast.OPARuntime.Name,      // opa.runtime (environment, config)
}

// Capabilities returns the OPA capabilities ztp compiles policies with: those of the linked
// OPA version minus http.send, net.lookup_ip_addr and opa.runtime, with no network host
// allowed, plus ztp.query (QueryBuiltin). A policy calling a removed built-in fails to
// compile. Each call returns a fresh copy, so callers (ztpctl policy test runs the tester
// with the same capabilities) may modify it.
func Capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool {
		return slices.Contains(removedBuiltins, b.Name)
	})
	// An empty (non-nil) list permits no host at all, should a networked built-in ever be
	// added back or introduced under another name.
	c.AllowNet = []string{}
	// ztp's own built-in, declared wherever policies compile (see QueryBuiltin).
	c.Builtins = append(c.Builtins, queryDecl)
	return c
}
