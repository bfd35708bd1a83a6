package audit

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestStoredRequestBound: the bytes a rendering takes in a record never
// exceed StoredRequestBound, for the renderings that escape worst (quotes
// and backslashes) and for ones kept whole.
func TestStoredRequestBound(t *testing.T) {
	const max = 1024
	for _, s := range []string{strings.Repeat(`"`, 4*max), strings.Repeat(`\`, 4*max), strings.Repeat("\x01", 4*max), "short"} {
		req, _ := json.Marshal(map[string]string{"m": s})
		e, err := newEntry(&Record{Type: TypeRequest, Decision: DecisionDeny, Request: req}, nil, max)
		if err != nil {
			t.Fatal(err)
		}
		stored := len(e.val(fRequest)) + len(e.val(fRequestTruncated))
		if bound := StoredRequestBound(len(req), max); stored > bound {
			t.Errorf("a %d-byte rendering of %q... takes %d bytes, StoredRequestBound says %d", len(req), s[:1], stored, bound)
		}
	}
}
