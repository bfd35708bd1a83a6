package decode

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind, such as
// a reflection fetch outliving its upstream connection.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
