package proxy_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/pki"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestServingCertificateExpiryMetric: the proxy exports the NotAfter of the
// certificate it serves, read from tls.cert at start-up, on /metrics.
func TestServingCertificateExpiryMetric(t *testing.T) {
	e := proxytest.Prepare(t, proxytest.Options{})
	// A serving certificate with an expiry of its own, distinct from the
	// default lifetime the test CA gives, so the gauge cannot match by chance.
	notAfter := time.Now().Add(10*24*time.Hour + 17*time.Second).Truncate(time.Second)
	leaf, err := e.CA.Issue(pki.LeafOptions{CommonName: "ztp-proxy", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true, NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(e.Dir, "proxy", leaf); err != nil {
		t.Fatal(err)
	}
	e.Restart(t)

	mfs, err := e.Server.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		if mf.GetName() != "ztp_tls_certificate_expiry_timestamp_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got = append(got, strings.Join(labels, ",")+" "+strconv.FormatInt(int64(m.GetGauge().GetValue()), 10))
		}
	}
	want := "cert=server " + strconv.FormatInt(notAfter.Unix(), 10)
	if len(got) != 1 || got[0] != want {
		t.Fatalf("ztp_tls_certificate_expiry_timestamp_seconds = %q, want [%q]", got, want)
	}
	if _, body := scrape(t, e, "/metrics"); !strings.Contains(body, `ztp_tls_certificate_expiry_timestamp_seconds{cert="server"} `) {
		t.Errorf("/metrics lacks the serving certificate's expiry")
	}
}
