package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/identity"
)

// authFunc is an Authenticator made of a function.
type authFunc func(context.Context) (identity.Principal, error)

func (f authFunc) Authenticate(ctx context.Context) (identity.Principal, error) { return f(ctx) }

// TestWatchMissesNoReload: a call authenticated before a reload but
// registered after the reload walked the live calls checks itself, so no
// interleaving of the two lets it live on under the old rules.
func TestWatchMissesNoReload(t *testing.T) {
	accepted := true
	p := &Pipeline{now: time.Now, afterFunc: afterFunc, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		auth: authFunc(func(context.Context) (identity.Principal, error) {
			if !accepted {
				return identity.Principal{}, errors.New("matches no rule")
			}
			return identity.Principal{ID: "x", Kind: "human"}, nil
		})}
	pr, gen, err := p.authenticate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The reload happens here: new rules, then the walk over registered calls.
	accepted = false
	if n := p.reauthenticate(context.Background()); n != 0 {
		t.Fatalf("Reauthenticate ended %d calls, want 0 (none registered)", n)
	}
	c := &call{principal: pr}
	ctx := p.watch(context.Background(), c, gen)
	if r := c.credentialEnd(time.Now()); r != "reload: matches no rule" {
		t.Errorf("credentialEnd = %q, want the reload's refusal", r)
	}
	if ctx.Err() == nil {
		t.Error("the call's context was not cancelled")
	}

	// A call registered with the current generation is not checked again.
	accepted = true
	pr, gen, _ = p.authenticate(context.Background())
	c2 := &call{principal: pr}
	p.watch(context.Background(), c2, gen)
	accepted = false
	if r := c2.credentialEnd(time.Now()); r != "" {
		t.Errorf("credentialEnd without a reload = %q, want \"\"", r)
	}
	if n := p.reauthenticate(context.Background()); n != 1 {
		t.Errorf("Reauthenticate ended %d calls, want 1", n)
	}
	c.live.close()
	c2.live.close()
	if p.live.head != nil {
		t.Error("closed calls are still in the live set")
	}
}
