package proxy_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestBreakglassOffWithoutSection: a config without a breakglass section grants
// nothing (secure default), and says why.
func TestBreakglassOffWithoutSection(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	bg := ztpv1.NewBreakGlassClient(e.Conn(t, proxytest.AliceID))
	_, err := bg.RequestGrant(proxytest.Ctx(t), &ztpv1.RequestGrantRequest{Reason: "INC-1", Duration: durationpb.New(600e9)})
	proxytest.WantCode(t, "RequestGrant", err, codes.FailedPrecondition, "break-glass is not enabled")
}
