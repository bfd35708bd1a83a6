package proxy

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/ztp-dev/ztp/policy"
)

// evalPool runs policy evaluations on a few long-lived goroutines.
//
// OPA's evaluator recurses deeply. gRPC starts a fresh goroutine, with a small
// stack, for every call, and an evaluation on it grows that stack by repeated
// copying: in a CPU profile of the full pipeline at 64 calls in flight, stack
// growth (runtime.copystack) was 19% of the proxy's CPU. A long-lived goroutine
// keeps its grown stack from one evaluation to the next (a GC may shrink an
// idle one; it then grows once again, not once per call).
type evalPool struct {
	jobs chan *evalJob
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	free sync.Pool // *evalJob, each with its own done channel
	// onWorker counts the evaluations the workers made (the rest ran on their
	// callers' goroutines).
	onWorker atomic.Int64
}

type evalJob struct {
	ctx   context.Context
	eng   Evaluator
	input ast.Value
	res   policy.Result
	err   error
	done  chan struct{}
}

// newEvalPool starts n workers; Close stops them.
func newEvalPool(n int) *evalPool {
	p := &evalPool{jobs: make(chan *evalJob), stop: make(chan struct{})}
	p.free.New = func() any { return &evalJob{done: make(chan struct{}, 1)} }
	p.wg.Add(n)
	for range n {
		go p.work()
	}
	return p
}

func (p *evalPool) work() {
	defer p.wg.Done()
	for {
		select {
		case j := <-p.jobs:
			j.res, j.err = j.eng.EvalValue(j.ctx, j.input)
			p.onWorker.Add(1)
			j.done <- struct{}{}
		case <-p.stop:
			return
		}
	}
}

// eval evaluates on an idle worker, or on the caller's goroutine when every
// worker is busy (or the pool is closed or nil): waiting for a worker would
// only add latency, the CPU is busy either way.
func (p *evalPool) eval(ctx context.Context, eng Evaluator, input ast.Value) (policy.Result, error) {
	if p == nil {
		return eng.EvalValue(ctx, input)
	}
	j := p.free.Get().(*evalJob)
	j.ctx, j.eng, j.input = ctx, eng, input
	select {
	case p.jobs <- j:
		<-j.done
	default:
		j.res, j.err = eng.EvalValue(ctx, input)
	}
	res, err := j.res, j.err
	*j = evalJob{done: j.done}
	p.free.Put(j)
	return res, err
}

// Close stops the workers; later evaluations run on their callers' goroutines.
// It may be called more than once.
func (p *evalPool) Close() {
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
}
