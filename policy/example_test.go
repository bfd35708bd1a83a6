package policy_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ztp-dev/ztp/policy"
)

// Example shows the proxy's use of the package for one message: evaluate, decide, and
// render the status message of a denial.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	engine, err := policy.Load(ctx, policy.Options{Paths: []string{"testdata/etcd"}})
	if err != nil {
		log.Fatal(err)
	}

	input := map[string]any{
		"principal":       map[string]any{"id": "spiffe://example.org/user/alice", "kind": "human", "groups": []string{"sre"}},
		"method":          "/etcdserverpb.KV/Put",
		"upstream":        "etcd",
		"request":         map[string]any{"key": "Zm9v", "value": "YmFy"},
		"request_decoded": true,
	}
	res, err := engine.Eval(ctx, input)
	v := policy.Decide(res, err, policy.Enforce, "")
	fmt.Println(v.Decision, v.Forward())
	fmt.Println(policy.DeniedMessage(v.Reasons))

	// The same message under an active break-glass grant.
	v = policy.Decide(res, err, policy.Enforce, "bg-42")
	fmt.Println(v.Decision, v.Grant, v.Reasons)

	// Output:
	// deny false
	// ztp: denied: human writes need break-glass
	// allow bg-42 [human writes need break-glass]
}
