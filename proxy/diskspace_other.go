//go:build !unix

package proxy

import "errors"

// diskFree is not implemented here: readiness shows the watermark as
// degraded, "free space unknown", rather than pretending there is room.
func diskFree(string) (uint64, error) {
	return 0, errors.ErrUnsupported
}
