package proxy

import (
	"fmt"
	"strings"
	"testing"
)

func TestRecordedUnknownBounded(t *testing.T) {
	few := []string{"15", "success.requestPut.9"}
	if got := recordedUnknown(few); len(got) != 2 || got[1] != few[1] {
		t.Errorf("recordedUnknown(%q) = %q, want it unchanged", few, got)
	}
	var many []string
	for i := range 10000 {
		many = append(many, fmt.Sprintf("%s.%d", strings.Repeat("child.", 60), i))
	}
	got := recordedUnknown(many)
	size := 0
	for _, u := range got {
		size += len(u)
	}
	if len(got) > maxRecordedUnknown+1 || size > maxRecordedUnknownBytes+64 {
		t.Fatalf("recordedUnknown of 10000 deep paths: %d entries, %d bytes", len(got), size)
	}
	if last := got[len(got)-1]; !strings.HasPrefix(last, "… and ") || !strings.HasSuffix(last, " more") {
		t.Errorf("last entry = %q, want a count of the rest", last)
	}
}
