package proxy

import (
	"context"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/identity"
)

// BenchmarkLiveCall measures what watching a call for the end of its
// credential adds to every call: the cancellable context, the registration
// for reloads and, with an expiry, the timer; and the per-message check.
func BenchmarkLiveCall(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tc := range []struct {
		name    string
		expires time.Time
	}{
		{"no-expiry", time.Time{}},
		{"expiry", time.Now().Add(time.Hour)},
	} {
		p := &Pipeline{now: time.Now, afterFunc: afterFunc}
		b.Run(tc.name+"/call", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c := &call{principal: identity.Principal{ID: "x", Expires: tc.expires}}
					p.watch(ctx, c, 0)
					c.live.close()
				}
			})
		})
		b.Run(tc.name+"/message", func(b *testing.B) {
			c := &call{principal: identity.Principal{ID: "x", Expires: tc.expires}}
			p.watch(ctx, c, 0)
			defer c.live.close()
			b.ReportAllocs()
			for b.Loop() {
				if err := p.sendAllowed(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
