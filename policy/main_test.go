package policy

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if an evaluation leaves a goroutine behind (OPA starts one per
// evaluation to watch the context).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
