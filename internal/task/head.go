package task

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// RecordHead is what a collector of HostRecords reads to route, count and
// deduplicate a record: everything but its varbinds and per-part errors,
// which it passes on as the bytes it received.
type RecordHead struct {
	Schema     int       `json:"schema"`
	TaskID     string    `json:"task_id"`
	Site       string    `json:"site"`
	Host       string    `json:"host"`
	HostKey    string    `json:"host_key"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS float64   `json:"duration_ms"`
	Error      *Error    `json:"error"`
}

// ErrNoTaskID is returned for a record that does not say which task it answers.
var ErrNoTaskID = errors.New("record has no task_id")

// ReadHead reads the head of an encoded HostRecord without decoding its
// varbinds. A record of a schema this package does not know is refused
// with ErrUnknownSchema, the head saying which schema and, when it could be
// read, which task, even when the rest of it is laid out otherwise; a
// record without a schema or a task id (ErrNoTaskID) is refused as
// unreadable. None is half-read.
func ReadHead(data []byte) (RecordHead, error) {
	var h RecordHead
	if !readHeadFast(data, &h) {
		h = RecordHead{}
		if err := json.Unmarshal(data, &h); err != nil {
			if other, ok := otherSchema(data); ok {
				return other, unknownSchema(&other)
			}
			return RecordHead{}, fmt.Errorf("read host record: %w", err)
		}
	}
	switch {
	case h.Schema == 0:
		return h, fmt.Errorf("read host record %q: it has no schema", h.TaskID)
	case h.Schema != Schema:
		return h, unknownSchema(&h)
	case h.TaskID == "":
		return h, fmt.Errorf("read host record of host %q: %w", h.Host, ErrNoTaskID)
	}
	return h, nil
}

func unknownSchema(h *RecordHead) error {
	return fmt.Errorf("read host record %q: schema %d: %w (this reader knows schema %d)", h.TaskID, h.Schema, ErrUnknownSchema, Schema)
}

// otherSchema reads the schema and task id of a JSON object that does not
// decode as a record of this schema: true when it names another schema.
func otherSchema(data []byte) (RecordHead, bool) {
	var top map[string]json.RawMessage
	var h RecordHead
	if json.Unmarshal(data, &top) != nil || json.Unmarshal(top["schema"], &h.Schema) != nil || h.Schema == 0 || h.Schema == Schema {
		return RecordHead{}, false
	}
	_ = json.Unmarshal(top["task_id"], &h.TaskID) // named when it can be
	return h, true
}

// headKeys are the keys the head reads; the fast reader skips any other.
var headKeys = []string{"schema", "task_id", "site", "host", "host_key", "started_at", "duration_ms", "error"}

// readHeadFast reads the head of a record in the form AppendJSON writes,
// skipping the values it does not need without decoding them. It reports
// false for anything it cannot read exactly as encoding/json would (a key
// that differs from a head key only in case, a null where a value is
// read, a time with escapes, ...): FuzzReadHead checks that wherever it
// answers, encoding/json gives the same head.
func readHeadFast(data []byte, h *RecordHead) bool {
	d := scanner{b: data}
	ok := d.object(func(key []byte) bool {
		switch string(key) {
		case "schema":
			return d.int(&h.Schema)
		case "task_id":
			return d.text(&h.TaskID)
		case "site":
			return d.text(&h.Site)
		case "host":
			return d.text(&h.Host)
		case "host_key":
			return d.text(&h.HostKey)
		case "started_at":
			return d.time(&h.StartedAt)
		case "duration_ms":
			return d.float64(&h.DurationMS)
		case "error":
			return d.recordError(&h.Error)
		}
		if foldsTo(key, headKeys) {
			return false // encoding/json matches keys without regard to case
		}
		return d.skip(0)
	})
	if !ok {
		return false
	}
	d.ws()
	return d.i == len(d.b)
}

// recordError reads null or {"kind": ..., "message": ...} into *dst,
// reusing a struct an earlier "error" key made, as encoding/json does.
func (d *scanner) recordError(dst **Error) bool {
	if d.peek() == 'n' {
		if !d.literal("null") {
			return false
		}
		*dst = nil
		return true
	}
	e := *dst
	if e == nil {
		e = &Error{}
	}
	ok := d.object(func(key []byte) bool {
		switch string(key) {
		case "kind":
			return d.text(&e.Kind)
		case "message":
			return d.text(&e.Message)
		}
		if foldsTo(key, []string{"kind", "message"}) {
			return false
		}
		return d.skip(1)
	})
	if ok {
		*dst = e
	}
	return ok
}

func foldsTo(key []byte, keys []string) bool {
	for _, k := range keys {
		if strings.EqualFold(string(key), k) {
			return true
		}
	}
	return false
}
