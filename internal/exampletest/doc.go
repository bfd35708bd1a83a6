// Package exampletest is what the examples' tests (examples/etcd, examples/gobgp) share:
// subprocesses a test owns and always reaps, polling for readiness instead of sleeping,
// free loopback ports, the ztp binaries built once per test binary (with -race when the
// test runs under the race detector, so that a data race in the real proxy fails its
// exit-code check), and an example's Rego tests run with the proxy's own capabilities.
//
// It is imported only by tests.
package exampletest
