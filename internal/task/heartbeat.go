package task

import "time"

// HeartbeatPrefix: each poller publishes its Heartbeat on HeartbeatPrefix
// plus its id (a host key of its name): flock.pollers.<id>.
const HeartbeatPrefix = "flock.pollers."

// Heartbeat is what a poller says about itself, every poller.heartbeat and
// once more, with Stopping set, when it stops.
type Heartbeat struct {
	ID          string    `json:"id"`
	Site        string    `json:"site"`
	Version     string    `json:"version"`
	Concurrency int       `json:"concurrency"`
	InFlight    int64     `json:"in_flight"`
	Polls       uint64    `json:"polls"`
	StartedAt   time.Time `json:"started_at"`
	Time        time.Time `json:"time"`
	// EveryMS is the poller's heartbeat period: it counts as gone when
	// three periods pass without one.
	EveryMS int64 `json:"every_ms,omitempty"`
	// Stopping is set on the last heartbeat of a poller that stops cleanly.
	Stopping bool `json:"stopping,omitempty"`
}
