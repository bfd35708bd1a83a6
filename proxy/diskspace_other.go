//go:build !unix

package proxy

import "errors"

// diskFree reports that free space cannot be read: ztp supports unix systems
// (README, "Requirements"), which have statfs. Elsewhere the watermark fails
// closed: readiness stays degraded ("free space … unknown") rather than
// claiming room it cannot see, until audit.min_free_bytes is set to 0.
func diskFree(string) (uint64, error) {
	return 0, errors.ErrUnsupported
}
