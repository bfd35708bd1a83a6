package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/ztp-dev/ztp/audit"
)

func Example() {
	dir, err := os.MkdirTemp("", "audit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "audit.db")

	clock := func() time.Time { return time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC) }
	s, err := audit.Open(path, audit.Options{Redact: []string{"password"}, Now: clock})
	if err != nil {
		log.Fatal(err)
	}
	// Detach from the caller's context so a client hang-up cannot cancel
	// the record, but bound the wait.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(context.Background()), 5*time.Second)
	defer cancel()
	rec := &audit.Record{
		Type:           audit.TypeRequest,
		Principal:      &audit.Principal{ID: "spiffe://example.org/user/alice", Kind: "human", Groups: []string{"sre"}, Authn: "mtls"},
		Method:         "/admin.Users/SetPassword",
		Request:        json.RawMessage(`{"user":"bob","password":"hunter2"}`),
		RequestDecoded: true,
		Decision:       audit.DecisionAllow,
	}
	seq, err := s.Append(ctx, rec)
	if err != nil {
		log.Fatal(err) // the proxy would refuse the call: UNAVAILABLE
	}
	fmt.Println("seq", seq, "hash", rec.Hash[:16])
	if err := s.Close(); err != nil {
		log.Fatal(err)
	}

	err = audit.ScanFile(ctx, path, 1, func(r *audit.Record) error {
		fmt.Println(r.Seq, r.Method, string(r.Request))
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := audit.VerifyFile(ctx, path)
	fmt.Println("verified", res.Records, "records, error:", err)
	// Output:
	// seq 1 hash 0e86588fc28a6ac8
	// 1 /admin.Users/SetPassword {"password":"[redacted]","user":"bob"}
	// verified 1 records, error: <nil>
}
