package breakglass_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/breakglass"
	"github.com/ztp-dev/ztp/identity"
)

// A grant needs one approval by another human of sre-leads; it then covers
// the scope until it expires, exactly.
func ExampleStore() {
	dir, _ := os.MkdirTemp("", "breakglass-example")
	defer os.RemoveAll(dir)
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	log, err := audit.Open(filepath.Join(dir, "audit.db"), audit.Options{Now: clock})
	if err != nil {
		panic(err)
	}
	defer log.Close()
	ctx := context.Background()
	store, err := breakglass.Open(ctx, log.DB(), breakglass.Options{
		MaxDuration: time.Hour, ApprovalsRequired: 1, ApproverGroups: []string{"sre-leads"},
		Audit: log, Now: clock,
	})
	if err != nil {
		panic(err)
	}
	defer store.Stop(ctx)

	alice := identity.Principal{ID: "spiffe://example.org/user/alice", Kind: identity.KindHuman, Groups: []string{"sre"}}
	carol := identity.Principal{ID: "spiffe://example.org/lead/carol", Kind: identity.KindHuman, Groups: []string{"sre-leads"}}
	g, _ := store.Request(ctx, alice, breakglass.GrantRequest{
		Reason: "INC-4711 etcd quorum loss", Duration: 30 * time.Minute, Scope: []string{"/etcdserverpb.Maintenance/*"},
	})
	fmt.Println(g.State)
	_, err = store.Approve(ctx, alice, g.ID, "") // alice is no lead, and it is her grant
	fmt.Println(err)
	g, _ = store.Approve(ctx, carol, g.ID, "go ahead")
	fmt.Println(g.State, g.Expires.Format(time.RFC3339))

	_, ok := store.Active(alice.ID, "/etcdserverpb.Maintenance/Defragment", now)
	fmt.Println("defragment:", ok)
	_, ok = store.Active(alice.ID, "/etcdserverpb.KV/DeleteRange", now)
	fmt.Println("delete range:", ok)
	_, ok = store.Active(alice.ID, "/etcdserverpb.Maintenance/Defragment", g.Expires)
	fmt.Println("defragment at expiry:", ok)
	// Output:
	// pending
	// breakglass: not allowed: only humans in breakglass.approver_groups (sre-leads) may approve grants
	// active 2026-11-26T10:30:00Z
	// defragment: true
	// delete range: false
	// defragment at expiry: false
}
