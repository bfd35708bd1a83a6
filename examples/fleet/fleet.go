// Package fleet is a small, realistic admin API for trying ztp: a fleet manager
// with list, drain, restart, bulk delete and a streaming watch. It keeps its state
// in memory; `make demo` puts ztp-proxy in front of it.
package fleet

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ztp-dev/ztp/examples/fleet/fleetpb"
)

// Server implements fleetpb.FleetManagerServer.
type Server struct {
	fleetpb.UnimplementedFleetManagerServer

	mu       sync.Mutex
	machines map[string]*fleetpb.Machine
	watchers map[chan *fleetpb.Machine]string // channel → pool filter
}

// NewServer returns a fleet of n machines per pool, named pool-1 … pool-n.
func NewServer(pools []string, n int) *Server {
	s := &Server{machines: map[string]*fleetpb.Machine{}, watchers: map[chan *fleetpb.Machine]string{}}
	for _, p := range pools {
		for i := 1; i <= n; i++ {
			name := fmt.Sprintf("%s-%d", p, i)
			s.machines[name] = &fleetpb.Machine{Name: name, Pool: p, State: fleetpb.State_STATE_SERVING}
		}
	}
	return s
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g grpc.ServiceRegistrar) { fleetpb.RegisterFleetManagerServer(g, s) }

func (s *Server) ListMachines(_ context.Context, req *fleetpb.ListMachinesRequest) (*fleetpb.ListMachinesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &fleetpb.ListMachinesResponse{}
	for _, m := range s.machines {
		if req.GetPool() == "" || m.Pool == req.GetPool() {
			resp.Machines = append(resp.Machines, proto.Clone(m).(*fleetpb.Machine))
		}
	}
	slices.SortFunc(resp.Machines, func(a, b *fleetpb.Machine) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return resp, nil
}

func (s *Server) DrainMachine(_ context.Context, req *fleetpb.DrainMachineRequest) (*fleetpb.Machine, error) {
	return s.update(req.GetName(), func(m *fleetpb.Machine) { m.State = fleetpb.State_STATE_DRAINED })
}

func (s *Server) RestartMachine(_ context.Context, req *fleetpb.RestartMachineRequest) (*fleetpb.Machine, error) {
	return s.update(req.GetName(), func(m *fleetpb.Machine) {
		m.Restarts++
		m.State = fleetpb.State_STATE_SERVING
	})
}

func (s *Server) DeleteMachines(_ context.Context, req *fleetpb.DeleteMachinesRequest) (*fleetpb.DeleteMachinesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int32
	for name, m := range s.machines {
		if (req.GetPool() == "" || m.Pool == req.GetPool()) && (len(req.GetNames()) == 0 || slices.Contains(req.GetNames(), name)) {
			delete(s.machines, name)
			m.State = fleetpb.State_STATE_DELETED
			s.notify(m)
			n++
		}
	}
	return &fleetpb.DeleteMachinesResponse{Deleted: n}, nil
}

func (s *Server) WatchMachines(req *fleetpb.WatchMachinesRequest, ss grpc.ServerStreamingServer[fleetpb.MachineEvent]) error {
	ch := make(chan *fleetpb.Machine, 64)
	s.mu.Lock()
	s.watchers[ch] = req.GetPool()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, ch)
		s.mu.Unlock()
	}()
	// Headers go out once the watch is registered, so a client that waits for
	// them knows no later change can be missed.
	if err := ss.SendHeader(nil); err != nil {
		return err
	}
	for {
		select {
		case <-ss.Context().Done():
			return nil
		case m := <-ch:
			if err := ss.Send(&fleetpb.MachineEvent{Machine: m}); err != nil {
				return err
			}
		}
	}
}

func (s *Server) update(name string, f func(*fleetpb.Machine)) (*fleetpb.Machine, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.machines[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no machine %q", name)
	}
	f(m)
	s.notify(m)
	return proto.Clone(m).(*fleetpb.Machine), nil
}

// notify sends a copy of m to every matching watcher; a watcher too slow to keep
// up with 64 events loses the newest ones rather than blocking the fleet.
func (s *Server) notify(m *fleetpb.Machine) {
	for ch, pool := range s.watchers {
		if pool == "" || pool == m.Pool {
			select {
			case ch <- proto.Clone(m).(*fleetpb.Machine):
			default:
			}
		}
	}
}
