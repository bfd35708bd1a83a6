// Package etcd is ztp's worked example for etcd, the reference backend: a policy set, a
// configuration and the descriptor set that lets the proxy read etcd's requests.
//
// The package has no code of its own (`ztpctl certs quickstart` mints certificates for
// trying the example by hand). Its tests are what keep the example honest: the Rego tests of
// policies/ run with the proxy's own capabilities, a fuzz target checks the policy's
// invariants on arbitrary requests, the committed ztp.yaml must start a proxy, and an
// end-to-end test drives a real etcd with a real etcdctl through the real ztp-proxy
// binary, then reads the audit log it left behind. See README.md.
package etcd
