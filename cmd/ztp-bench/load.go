package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// callTimeout bounds one call: a stuck path shows as errors, not as a hang.
const callTimeout = 10 * time.Second

// window is what the load generator saw of one row.
type window struct {
	calls    int             // calls that completed, successfully, inside the measured window
	errors   int             // failed calls, warm-up included
	firstErr error           // the first of them
	lat      []time.Duration // latency of each counted call, sorted
}

// generate runs workers closed-loop workers, each making one UnaryCall after
// the other, from now until end. A call counts when it completes inside
// [from, end): in a steady state that is the throughput, without the ramp-up
// of the warm-up or calls cut off at the end.
func generate(ctx context.Context, c testgrpc.TestServiceClient, req *testgrpc.SimpleRequest, workers int, from, end time.Time) window {
	want := len(req.GetPayload().GetBody())
	results := make([]window, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := &results[w]
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				resp, err := c.UnaryCall(cctx, req)
				cancel()
				t1 := time.Now()
				if err == nil && len(resp.GetPayload().GetBody()) != want {
					err = fmt.Errorf("response payload of %d bytes, want the %d sent", len(resp.GetPayload().GetBody()), want)
				}
				if err != nil {
					if r.errors == 0 {
						r.firstErr = err
					}
					r.errors++
					continue
				}
				if !t1.Before(from) && t1.Before(end) {
					r.calls++
					r.lat = append(r.lat, t1.Sub(t0))
				}
			}
		})
	}
	wg.Wait()
	var all window
	for _, r := range results {
		all.calls += r.calls
		all.errors += r.errors
		if all.firstErr == nil {
			all.firstErr = r.firstErr
		}
		all.lat = append(all.lat, r.lat...)
	}
	slices.Sort(all.lat)
	return all
}

// quantile of sorted durations (nearest rank); 0 for none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
