package task

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// headOf is the reference: what encoding/json reads into a RecordHead.
func headOf(t testing.TB, data []byte) RecordHead {
	t.Helper()
	var h RecordHead
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return h
}

// The records Flock writes (the golden record, one without error, one
// with escapes in every text) take the fast path, and read as
// encoding/json reads them.
func TestReadHeadFastPathIsTaken(t *testing.T) {
	ok := sampleRecord()
	ok.Error, ok.Errors = nil, nil
	odd := sampleRecord()
	odd.Host, odd.TaskID = "odd \"host\" \u2028 é\x01", "default.odd@1"
	odd.Error.Message = "credential profile \"x\" is not defined\n\xff"
	for name, rec := range map[string]HostRecord{"golden": sampleRecord(), "ok": ok, "escapes": odd} {
		data := rec.AppendJSON(nil)
		var fast RecordHead
		if !readHeadFast(data, &fast) {
			t.Fatalf("%s: the fast reader declined %s", name, data)
		}
		if ref := headOf(t, data); !reflect.DeepEqual(fast, ref) {
			t.Fatalf("%s: fast %+v\njson %+v", name, fast, ref)
		}
		h, err := ReadHead(data)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := DecodeRecord(data) // as a whole-record reader sees it (invalid UTF-8 became U+FFFD)
		if err != nil {
			t.Fatal(err)
		}
		if h.TaskID != rec.TaskID || h.Site != rec.Site || h.Host != rec.Host || h.HostKey != rec.HostKey ||
			!h.StartedAt.Equal(rec.StartedAt) || h.DurationMS != rec.DurationMS || !reflect.DeepEqual(h.Error, rec.Error) {
			t.Fatalf("%s: head %+v of record %+v", name, h, rec)
		}
	}
	for _, declined := range []string{`{"Task_ID":"x"}`, `{"task\u005fid":"x"}`, `{"schema":null}`, `{"duration_ms":null}`,
		`{"error":{"KIND":"x"}}`, `{"started_at":"2026-11-25T12:00:00\u005a"}`, `{"schema":1}x`} {
		var h RecordHead
		if readHeadFast([]byte(declined), &h) {
			t.Errorf("the fast reader took %s, which it leaves to encoding/json", declined)
		}
	}
}

func TestReadHeadRefuses(t *testing.T) {
	v2 := `{"schema":2,"task_id":"default.h@1","site":"default","host":"h","host_key":"h","varbinds":[],"error":null}`
	h, err := ReadHead([]byte(v2))
	if !errors.Is(err, ErrUnknownSchema) || h.Schema != 2 || h.TaskID != "default.h@1" ||
		err.Error() != `read host record "default.h@1": schema 2: unknown schema (this reader knows schema 1)` {
		t.Fatalf("schema 2: %+v, %v", h, err)
	}
	// A later schema may lay the head out otherwise: still refused as of another schema, naming the task.
	h, err = ReadHead([]byte(`{"schema":3,"task_id":"default.h@2","started_at":1795608000,"error":"timeout"}`))
	if !errors.Is(err, ErrUnknownSchema) || h.Schema != 3 || h.TaskID != "default.h@2" {
		t.Fatalf("schema 3 laid out otherwise: %+v, %v", h, err)
	}
	for _, unreadable := range []string{`{}`, `null`, `{"task_id":"default.h@1","varbinds":[]}`, `{"schema":0,"task_id":"x"}`, `{"schema":"1"}`} {
		if _, err := ReadHead([]byte(unreadable)); err == nil || errors.Is(err, ErrUnknownSchema) {
			t.Errorf("%s: %v, want an unreadable record, not an unknown schema", unreadable, err)
		}
	}
	if _, err := ReadHead([]byte(`{"schema":1,"host":"h","varbinds":[]}`)); !errors.Is(err, ErrNoTaskID) {
		t.Fatalf("no task id: %v", err)
	}
	if _, err := ReadHead([]byte(`{"schema":1,"task_id":"x","varbinds":[`)); err == nil || !strings.HasPrefix(err.Error(), "read host record: ") {
		t.Fatalf("truncated record: %v", err)
	}
}

func TestNewRecordAndUndelivered(t *testing.T) {
	tk := sampleTask()
	at := time.Date(2026, 11, 25, 12, 0, 1, 0, time.UTC)
	r := NewRecord(&tk, "poller-a", 3, at)
	want := HostRecord{Schema: Schema, TaskID: tk.ID, Site: tk.Site, Host: tk.Host, HostKey: tk.HostKey, Address: tk.Address, Port: tk.Port,
		Poller: "poller-a", Attempt: 3, ScheduledAt: tk.ScheduledAt, StartedAt: at}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("NewRecord = %+v", r)
	}
	u := Undelivered(&tk, "dispatcher", 5, "pollers died with it", at)
	if u.Error == nil || u.Error.Kind != KindUndelivered || u.Attempt != 5 || u.Poller != "dispatcher" || u.TaskID != tk.ID ||
		u.Error.Message != "task for host core-sw1.example.net was delivered 5 times (max_deliver) without being polled to the end "+
			"(pollers died with it): the slot is given up and the next one will be polled" {
		t.Fatalf("Undelivered = %+v %+v", u, u.Error)
	}
}

func TestIDs(t *testing.T) {
	slot := time.UnixMilli(1795608000000)
	if got := SlotID(DefaultSite, "core-sw1-example-net", slot); got != "default.core-sw1-example-net@1795608000000" {
		t.Fatalf("SlotID = %q", got)
	}
	if got := NowID("branch-7", "h", time.Unix(0, 1795608000123456789)); got != "branch-7.h@now-1795608000123456789" {
		t.Fatalf("NowID = %q", got)
	}
	if got := HostStateKey("default", "h"); got != "default.h" {
		t.Fatalf("HostStateKey = %q", got)
	}
}

func TestParseTaskSubject(t *testing.T) {
	for subject, want := range map[string][3]string{
		"flock.tasks.default.core-sw1-example-net": {"default", "core-sw1-example-net", "true"},
		"flock.tasks.branch-7.h":                   {"branch-7", "h", "true"},
		"flock.tasks.default":                      {"", "", "false"},
		"flock.tasks.default.a.b":                  {"", "", "false"},
		"flock.tasks..h":                           {"", "", "false"},
		"flock.tasks.default.>":                    {"", "", "false"},
		"flock.results.default.h":                  {"", "", "false"},
	} {
		site, key, ok := ParseTaskSubject(subject)
		if site != want[0] || key != want[1] || fmt.Sprint(ok) != want[2] {
			t.Errorf("%s: %q %q %v, want %v", subject, site, key, ok, want)
		}
	}
}
