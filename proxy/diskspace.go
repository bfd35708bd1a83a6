package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/ztp-dev/ztp/metrics"
)

// diskWatch is the free-space watermark of the audit file's file system
// (audit.min_free_bytes). A full disk stops every caller, correctly (nothing
// is forwarded unaudited); the watermark makes that visible before it
// happens. It is checked with statfs by the readiness probe (every
// readinessInterval), never per call: below the watermark readiness is
// degraded with the reason, ztp_audit_disk_low is 1, and the change is
// logged once each way. ztp_audit_disk_free_bytes follows every check.
type diskWatch struct {
	dir     string // the audit file's directory: the file system it lives on
	min     uint64
	free    func(dir string) (uint64, error)
	metrics *metrics.Metrics
	log     *slog.Logger

	mu  sync.Mutex
	low bool
}

func newDiskWatch(auditPath string, min int64, free func(string) (uint64, error), m *metrics.Metrics, log *slog.Logger) *diskWatch {
	if free == nil {
		free = diskFree
	}
	return &diskWatch{dir: filepath.Dir(auditPath), min: uint64(min), free: free, metrics: m, log: log}
}

// check is a readiness warning: an error while free space is below the
// watermark, or when it cannot be read.
func (d *diskWatch) check(context.Context) error {
	free, err := d.free(d.dir)
	if err != nil {
		return fmt.Errorf("free space of %s unknown: %w", d.dir, err)
	}
	d.metrics.AuditDiskFreeBytes.Set(float64(free))
	low := free < d.min
	d.mu.Lock()
	changed := low != d.low
	d.low = low
	d.mu.Unlock()
	if low {
		d.metrics.AuditDiskLow.Set(1)
	} else {
		d.metrics.AuditDiskLow.Set(0)
	}
	switch {
	case changed && low:
		d.log.Warn("audit disk space below audit.min_free_bytes: the proxy refuses every call once the disk is full",
			"dir", d.dir, "free_bytes", free, "min_free_bytes", d.min)
	case changed:
		d.log.Info("audit disk space back above audit.min_free_bytes", "dir", d.dir, "free_bytes", free, "min_free_bytes", d.min)
	}
	if low {
		return fmt.Errorf("%d bytes free on the file system of %s, below audit.min_free_bytes %d", free, d.dir, d.min)
	}
	return nil
}
