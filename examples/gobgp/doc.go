// Package gobgp is ztp's worked example for GoBGP, a backend nobody on the project
// wrote: a Zero Touch Prod policy for gobgpd's gRPC API, a configuration, and the
// descriptor set that lets the proxy read gobgpd's requests (gobgpd serves no reflection).
//
// The package has no code of its own. Its tests keep the example honest: the Rego tests
// of policies/ run with the proxy's own capabilities, the committed ztp.yaml must start a
// proxy, the committed protoset must be what gen-protoset.sh makes, and an end-to-end test
// drives a real gobgpd with the stock gobgp CLI through `ztpctl tunnel` and the real
// ztp-proxy binary, then reads the audit log it left behind. See README.md.
package gobgp
