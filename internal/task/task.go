package task

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/flock-snmp/flock/internal/agent"
	"github.com/flock-snmp/flock/internal/oid"
)

// Schema is the version of PollTask and HostRecord this package writes.
const Schema = 1

// SchemaTransport is the schema of a PollTask that names a Transport. A
// poller older than the field would skip it and poll the agent over plain
// UDP (a tcp agent on a port nothing answers, a udp6 name at its IPv4
// address); schema 2 makes such a poller refuse the task instead, with a
// bad_task record saying "unknown schema", until it is upgraded. Tasks
// without a transport, and every record, keep Schema.
const SchemaTransport = 2

// TaskSchema is the schema of a task with transport t.
func TaskSchema(transport string) int {
	if transport == "" {
		return Schema
	}
	return SchemaTransport
}

// ErrUnknownSchema is returned when a message carries a schema this package does not know.
var ErrUnknownSchema = errors.New("unknown schema")

// ErrBadTask is wrapped by every error that makes a PollTask unusable.
var ErrBadTask = errors.New("bad task")

// Errors of queueing a task, whatever carries the queue.
var (
	// ErrHostBusy: the host still has a task queued or in flight, and a host
	// has at most one at a time (the new task's slot is an overrun).
	ErrHostBusy = errors.New("previous task for this host is still queued or in flight")
	// ErrQueueFull: the work queue holds as many tasks as it may.
	ErrQueueFull = errors.New("task queue is full")
)

// PollTask asks a poller to poll one host once. It names a credential
// profile and never carries a secret.
type PollTask struct {
	Schema  int    `json:"schema"`
	ID      string `json:"id"` // "<site>.<hostkey>@<slot unix ms>": unique per host and slot
	Site    string `json:"site"`
	Host    string `json:"host"`
	HostKey string `json:"host_key"`
	Address string `json:"address"` // DNS name or IP literal (IPv6 unbracketed, maybe with a zone), resolved by the poller at poll time
	Port    uint16 `json:"port"`
	// Transport is how the agent is reached: udp4, udp6, tcp, tcp4 or tcp6
	// (agent.UDP4, ...); empty for udp, the address's own family.
	Transport   string `json:"transport,omitempty"`
	Credentials string `json:"credentials"` // name of a credential profile in the poller's config
	// Get lists OIDs to GET; Walk lists subtrees to walk. Numeric, leading dot.
	Get  []string `json:"get,omitempty"`
	Walk []string `json:"walk,omitempty"`
	// Tables are walked with all their columns in the same requests.
	Tables         []Table `json:"tables,omitempty"`
	TimeoutMS      int64   `json:"timeout_ms"`      // per request
	PollTimeoutMS  int64   `json:"poll_timeout_ms"` // budget for the whole poll, from when it starts
	Retries        int     `json:"retries"`
	MaxOids        int     `json:"max_oids"`
	MaxRepetitions int     `json:"max_repetitions"`
	// NoBulk walks with GETNEXT even on v2c/v3; AllowNonIncreasingOIDs lets
	// walks pass OIDs out of order; UnconnectedUDP accepts answers from any
	// address. All false by default.
	NoBulk                 bool `json:"no_bulk,omitempty"`
	AllowNonIncreasingOIDs bool `json:"allow_nonincreasing_oids,omitempty"`
	UnconnectedUDP         bool `json:"unconnected_udp,omitempty"`
	// MaxOutstanding bounds the requests in flight to the agent's address
	// (0 means 1).
	MaxOutstanding int       `json:"max_outstanding,omitempty"`
	ScheduledAt    time.Time `json:"scheduled_at"`
	Deadline       time.Time `json:"deadline"` // the result is useless after this: the poll ends by then whatever its budget
}

// Table is a conceptual table to walk: its root and the columns to fetch.
type Table struct {
	Root    string   `json:"root"`
	Columns []string `json:"columns"`
}

// Timeout is the per-request timeout.
func (t *PollTask) Timeout() time.Duration { return time.Duration(t.TimeoutMS) * time.Millisecond }

// PollDeadline is when a poll that starts at start must end: its budget
// after start, but never past the task's deadline.
func (t *PollTask) PollDeadline(start time.Time) time.Time {
	d := start.Add(time.Duration(t.PollTimeoutMS) * time.Millisecond)
	if t.Deadline.Before(d) {
		return t.Deadline
	}
	return d
}

// DecodeTask decodes and validates a PollTask. Every error wraps ErrBadTask.
func DecodeTask(data []byte) (PollTask, error) {
	var t PollTask
	if !decodeTaskFast(data, &t) {
		// Not in the plain form the dispatcher writes: encoding/json decides.
		t = PollTask{}
		if err := json.Unmarshal(data, &t); err != nil {
			return t, fmt.Errorf("%w: decode: %w", ErrBadTask, err)
		}
	}
	return t, t.Validate()
}

// Validate checks that a task can be polled as it is.
func (t *PollTask) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if t.Schema != Schema && t.Schema != SchemaTransport {
		bad("schema %d: %w", t.Schema, ErrUnknownSchema)
	}
	if t.ID == "" {
		bad("id is empty")
	}
	if t.Host == "" {
		bad("host is empty")
	}
	if t.Address == "" {
		bad("address is empty")
	} else if err := agent.CheckHost(t.Address, t.Transport); err != nil {
		bad("address: %w", err)
	}
	if t.Port == 0 {
		bad("port is 0")
	}
	if t.Credentials == "" {
		bad("credentials is empty")
	}
	if len(t.Get) == 0 && len(t.Walk) == 0 && len(t.Tables) == 0 {
		bad("nothing to poll: get, walk and tables are all empty")
	}
	for i, tb := range t.Tables {
		if _, err := oid.Parse(tb.Root); err != nil {
			bad("tables[%d].root: %w", i, err)
		}
		if len(tb.Columns) == 0 {
			bad("tables[%d]: no columns", i)
		}
		for j, c := range tb.Columns {
			if _, err := oid.Parse(c); err != nil {
				bad("tables[%d].columns[%d]: %w", i, j, err)
			}
		}
	}
	for i, s := range t.Get {
		if _, err := oid.Parse(s); err != nil {
			bad("get[%d]: %w", i, err)
		}
	}
	for i, s := range t.Walk {
		if _, err := oid.Parse(s); err != nil {
			bad("walk[%d]: %w", i, err)
		}
	}
	if t.TimeoutMS <= 0 {
		bad("timeout_ms %d is not positive", t.TimeoutMS)
	}
	if t.PollTimeoutMS <= 0 {
		bad("poll_timeout_ms %d is not positive", t.PollTimeoutMS)
	}
	if t.Retries < 0 {
		bad("retries %d is negative", t.Retries)
	}
	if t.MaxOids <= 0 {
		bad("max_oids %d is not positive", t.MaxOids)
	}
	if t.MaxRepetitions <= 0 {
		bad("max_repetitions %d is not positive", t.MaxRepetitions)
	}
	if t.Deadline.IsZero() {
		bad("deadline is missing")
	}
	if len(errs) == 0 {
		return nil
	}
	name := t.Host
	if name == "" {
		name = t.ID
	}
	return fmt.Errorf("%w for host %q: %w", ErrBadTask, name, errors.Join(errs...))
}

// Error kinds a HostRecord can carry.
const (
	KindTimeout     = "timeout"     // the agent did not answer in time (or the community/user is wrong: SNMP agents stay silent then)
	KindAuth        = "auth"        // the agent rejected our credentials (SNMPv3 reports)
	KindUnreachable = "unreachable" // ICMP unreachable, connection refused, no route
	KindResolve     = "resolve"     // the host name did not resolve
	KindProtocol    = "protocol"    // the agent answered with an error status, a malformed packet, or non-increasing OIDs
	KindBadTask     = "bad_task"    // the task itself was unusable (undecodable, unknown credential profile)
	KindTooLarge    = "too_large"   // the record exceeded what the bus carries; its varbinds were dropped
	KindUndelivered = "undelivered" // the task reached max_deliver without a poller answering it; the slot was given up
	KindInternal    = "internal"    // a fault of the poller itself
)

// Error says why a poll failed. Varbinds collected before the failure stay in the record.
type Error struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Kind + ": " + e.Message }

// HostRecord is the result of one poll of one host.
type HostRecord struct {
	Schema      int       `json:"schema"`
	TaskID      string    `json:"task_id"`
	Site        string    `json:"site"`
	Host        string    `json:"host"`
	HostKey     string    `json:"host_key"`
	Address     string    `json:"address"` // the agent polled: the task's address and port
	Port        uint16    `json:"port"`
	Transport   string    `json:"transport,omitempty"` // the task's; empty for udp
	Poller      string    `json:"poller"`
	Attempt     int       `json:"attempt"` // delivery number of the task, 1 for the first
	ScheduledAt time.Time `json:"scheduled_at"`
	StartedAt   time.Time `json:"started_at"`
	DurationMS  float64   `json:"duration_ms"`
	Varbinds    []Varbind `json:"varbinds"`
	// Error is the first failure; Errors lists every failed part (the GETs,
	// one walk or table) when there is more than one. Varbinds of the parts
	// that worked stay in the record.
	Error  *Error      `json:"error"`
	Errors []PartError `json:"errors,omitempty"`
}

// NewRecord begins the HostRecord of one delivery of t: which task and
// host it answers, which poller polls it, which delivery it is (attempt, 1
// for the first) and when the poll started. The varbinds, the duration and
// any error are the poll's to fill in. Every record, a poll's or an error
// record answering an unpolled task, starts here.
func NewRecord(t *PollTask, poller string, attempt int, started time.Time) HostRecord {
	return HostRecord{
		Schema: Schema, TaskID: t.ID, Site: t.Site, Host: t.Host, HostKey: t.HostKey, Address: t.Address, Port: t.Port,
		Transport: t.Transport, Poller: poller, Attempt: attempt, ScheduledAt: t.ScheduledAt, StartedAt: started,
	}
}

// Undelivered is the final record of a task that reached max_deliver
// without being polled to the end, so the host's slot ends with a record
// rather than a silence: by is who gives the task up (the poller holding
// its last delivery, or the dispatcher when its pollers died with it),
// deliveries how often it was delivered, and why what became of the last
// delivery.
func Undelivered(t *PollTask, by string, deliveries int, why string, now time.Time) HostRecord {
	r := NewRecord(t, by, deliveries, now)
	r.Error = &Error{Kind: KindUndelivered, Message: fmt.Sprintf(
		"task for host %s was delivered %d times (max_deliver) without being polled to the end (%s): "+
			"the slot is given up and the next one will be polled", t.Host, deliveries, why)}
	return r
}

// PartError is the failure of one part of a poll.
type PartError struct {
	Part    string `json:"part"` // "get", "walk <oid>" or "table <oid>"
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// DecodeRecord decodes a HostRecord, keeping Counter64 values exact.
func DecodeRecord(data []byte) (HostRecord, error) {
	var r HostRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("decode host record: %w", err)
	}
	if r.Schema != Schema {
		return r, fmt.Errorf("decode host record %q: schema %d: %w", r.TaskID, r.Schema, ErrUnknownSchema)
	}
	return r, nil
}

// MarshalJSON encodes the record exactly as AppendJSON does.
func (r *HostRecord) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// AppendJSON appends the record's JSON encoding (one line, no trailing newline) to b.
// It does not use reflection: it runs once per poll.
func (r *HostRecord) AppendJSON(b []byte) []byte {
	b = append(b, `{"schema":`...)
	b = appendInt(b, int64(r.Schema))
	b = append(b, `,"task_id":`...)
	b = appendString(b, r.TaskID)
	b = append(b, `,"site":`...)
	b = appendString(b, r.Site)
	b = append(b, `,"host":`...)
	b = appendString(b, r.Host)
	b = append(b, `,"host_key":`...)
	b = appendString(b, r.HostKey)
	b = append(b, `,"address":`...)
	b = appendString(b, r.Address)
	b = append(b, `,"port":`...)
	b = appendUint(b, uint64(r.Port))
	if r.Transport != "" {
		b = append(b, `,"transport":`...)
		b = appendString(b, r.Transport)
	}
	b = append(b, `,"poller":`...)
	b = appendString(b, r.Poller)
	b = append(b, `,"attempt":`...)
	b = appendInt(b, int64(r.Attempt))
	b = append(b, `,"scheduled_at":`...)
	b = appendTime(b, r.ScheduledAt)
	b = append(b, `,"started_at":`...)
	b = appendTime(b, r.StartedAt)
	b = append(b, `,"duration_ms":`...)
	b = appendFloat(b, r.DurationMS)
	b = append(b, `,"varbinds":[`...)
	for i := range r.Varbinds {
		if i > 0 {
			b = append(b, ',')
		}
		b = r.Varbinds[i].AppendJSON(b)
	}
	b = append(b, `],"error":`...)
	if r.Error == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"kind":`...)
		b = appendString(b, r.Error.Kind)
		b = append(b, `,"message":`...)
		b = appendString(b, r.Error.Message)
		b = append(b, '}')
	}
	if len(r.Errors) > 0 {
		b = append(b, `,"errors":[`...)
		for i := range r.Errors {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"part":`...)
			b = appendString(b, r.Errors[i].Part)
			b = append(b, `,"kind":`...)
			b = appendString(b, r.Errors[i].Kind)
			b = append(b, `,"message":`...)
			b = appendString(b, r.Errors[i].Message)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// Quirks are what pollers learnt about a device, shared by every poller
// through the flock_devices key-value bucket under "<site>.<hostkey>".
type Quirks struct {
	// NoBulk: the agent does not answer GETBULK but does answer GETNEXT.
	NoBulk bool `json:"no_bulk,omitempty"`
	// MaxRepetitions is the largest max-repetitions the agent answered without tooBig.
	MaxRepetitions int `json:"max_repetitions,omitempty"`
	// MaxVarbinds is the most varbinds one request may ask for: the agent
	// stayed silent on larger requests (and answered smaller ones).
	MaxVarbinds int       `json:"max_varbinds,omitempty"`
	Poller      string    `json:"poller,omitempty"`
	LearnedAt   time.Time `json:"learned_at"`
}
