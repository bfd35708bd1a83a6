package audit

import bolt "go.etcd.io/bbolt"

// DB exposes the store's bbolt handle so that other subsystems can keep their
// own state durable in the same file (break-glass grants live in a bucket
// here, so one file holds both the grants and the trail of what was done under
// them). Callers must never write the buckets this package owns ("records",
// "meta").
func (s *Store) DB() *bolt.DB { return s.db }
