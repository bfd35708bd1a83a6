package proxy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ztp-dev/ztp/decode"
)

// CheckRedact refuses audit.redact patterns that name a request field by its
// protobuf name when requests are recorded under its JSON name: "new_password"
// would match nothing, and the secret it was meant to hide would be written
// into an append-only log for good. sets are the upstreams' descriptor sets
// (upstreams decoded by reflection cannot be checked before they answer).
func CheckRedact(redact []string, sets []*decode.Protoset) error {
	if len(redact) == 0 || len(sets) == 0 {
		return nil
	}
	json := map[string]bool{}
	renamed := map[string]decode.FieldName{}
	for _, ps := range sets {
		j, r := ps.FieldNames()
		for k := range j {
			json[k] = true
		}
		for k, v := range r {
			renamed[k] = v
		}
	}
	var errs []error
	for i, pattern := range redact {
		for _, seg := range strings.Split(pattern, ".") {
			f, ok := renamed[seg]
			if !ok || json[seg] {
				continue // a JSON name somewhere, or no field's protobuf name
			}
			errs = append(errs, fmt.Errorf("audit.redact[%d]: %q: %q is the protobuf name of %s; requests are recorded with JSON names, so write %q",
				i, pattern, seg, f.Field, f.JSON))
		}
	}
	return errors.Join(errs...)
}
