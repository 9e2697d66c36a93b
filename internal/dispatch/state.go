package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/flock-snmp/flock/internal/task"
)

// HostState is what the dispatcher knows of a host from the records it collected.
type HostState struct {
	Host                string      `json:"host"`
	LastTaskID          string      `json:"last_task_id"`
	LastPollAt          time.Time   `json:"last_poll_at"`
	LastSuccessAt       time.Time   `json:"last_success_at"`
	LastError           *task.Error `json:"last_error"`
	LastErrorAt         time.Time   `json:"last_error_at"`
	ConsecutiveFailures int         `json:"consecutive_failures"`
	LastDurationMS      float64     `json:"last_duration_ms"`
	// Recent holds the last task ids written to the sinks, so a redelivered
	// record is not written twice.
	Recent []string `json:"recent_task_ids"`
}

// StateStore persists host states (a JetStream KV bucket in production).
type StateStore interface {
	Put(ctx context.Context, key string, value []byte) error
	All(ctx context.Context) (map[string][]byte, error)
}

// States is the per-host state, keyed by <site>.<hostkey>. Safe for concurrent use.
type States struct {
	mu sync.Mutex
	m  map[string]*HostState
}

func newStates() *States { return &States{m: map[string]*HostState{}} }

// LoadStates reads every saved state from store.
func LoadStates(ctx context.Context, store StateStore) (*States, error) {
	s := newStates()
	all, err := store.All(ctx)
	if err != nil {
		return nil, err
	}
	for k, v := range all {
		var hs HostState
		if err := json.Unmarshal(v, &hs); err != nil {
			return nil, fmt.Errorf("host state %s: %w", k, err)
		}
		s.m[k] = &hs
	}
	return s, nil
}

// replace takes every state of from, dropping the ones it has not.
func (s *States) replace(from *States) {
	from.mu.Lock()
	m := from.m
	from.mu.Unlock()
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
}

// statesCache is a standby's view of the host states in the store, read at
// most once every few seconds.
type statesCache struct {
	mu   sync.Mutex
	at   time.Time
	last map[string]HostState
}

func (c *statesCache) get(store StateStore) map[string]HostState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if store == nil || time.Since(c.at) < 5*time.Second {
		return c.last
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if fresh, err := LoadStates(ctx, store); err == nil {
		c.last, c.at = fresh.Snapshot(), time.Now()
	}
	return c.last
}

// Get returns a copy of a host's state.
func (s *States) Get(key string) (HostState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs, ok := s.m[key]
	if !ok {
		return HostState{}, false
	}
	return *hs, true
}

// Len is the number of hosts with a state.
func (s *States) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

const recentIDs = 4

// seen reports whether a record of this task was already written.
func (s *States) seen(key, taskID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := s.m[key]
	return hs != nil && slices.Contains(hs.Recent, taskID)
}

// observe records one HostRecord in its host's state and returns the
// state's JSON when encode is set (to be saved), nil otherwise. A record of
// a task already seen, or of an older slot arriving late, does not move the
// state back.
func (s *States) observe(key string, r *task.RecordHead, encode bool) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := s.m[key]
	if hs == nil {
		hs = &HostState{Host: r.Host}
		s.m[key] = hs
	}
	if !slices.Contains(hs.Recent, r.TaskID) {
		hs.Recent = append(hs.Recent, r.TaskID)
		if len(hs.Recent) > recentIDs {
			hs.Recent = hs.Recent[len(hs.Recent)-recentIDs:]
		}
		if !r.StartedAt.Before(hs.LastPollAt) {
			hs.Host, hs.LastTaskID, hs.LastPollAt, hs.LastDurationMS = r.Host, r.TaskID, r.StartedAt, r.DurationMS
			if r.Error == nil {
				hs.LastSuccessAt = r.StartedAt
				hs.ConsecutiveFailures = 0
			} else {
				hs.LastError, hs.LastErrorAt = r.Error, r.StartedAt
				hs.ConsecutiveFailures++
			}
		}
	}
	if !encode {
		return nil
	}
	data, _ := json.Marshal(hs)
	return data
}

// Snapshot copies every host's state, keyed by <site>.<hostkey>.
func (s *States) Snapshot() map[string]HostState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]HostState, len(s.m))
	for k, hs := range s.m {
		out[k] = *hs
	}
	return out
}

// DecodeStates decodes states as the dispatcher saves them in the KV bucket.
func DecodeStates(all map[string][]byte) (map[string]HostState, error) {
	out := make(map[string]HostState, len(all))
	for k, v := range all {
		var hs HostState
		if err := json.Unmarshal(v, &hs); err != nil {
			return nil, fmt.Errorf("host state %s: %w", k, err)
		}
		out[k] = hs
	}
	return out, nil
}
