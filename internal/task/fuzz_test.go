package task

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodeTask: any bytes on a task subject give a task or an error wrapping ErrBadTask, never a panic.
func FuzzDecodeTask(f *testing.F) {
	good, _ := json.Marshal(sampleTask())
	f.Add(good)
	f.Add([]byte(`{"schema":1}`))
	f.Add([]byte(`{"schema":1,"tables":[{"root":".1.3","columns":[]}]}`))
	f.Add([]byte("\x00\xff"))
	for _, s := range []string{
		`{"schema":1,"id":"a\u00e9","get":[".1.3"],"port":161}`, `{"Schema":1}`, `{"schema":1.0}`, `{"schema":01}`,
		`{"port":65536}`, `{"port":-1}`, `{"get":null}`, `{"get":[]}`, `{"tables":[]}`, `{"id":"a"}x`, `{"id":"\xff"}`,
		`{"scheduled_at":"2026-11-25T12:00:00.5+01:00"}`, `{"scheduled_at":"2026-11-25 12:00:00"}`, `{"no_bulk":true,"no_bulk":false}`,
		`{"retries":9223372036854775808}`, `{"timeout_ms":-0}`, ` { "id" : "x" } `, `{}`, `[]`, `{"id":"é"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := DecodeTask(data)
		if err == nil {
			if tk.Validate() != nil {
				t.Fatalf("DecodeTask accepted a task that does not validate: %s", data)
			}
		}
		// The fast decoder is exact where it answers: encoding/json decodes
		// the same bytes to the same task.
		var fast, ref PollTask
		if decodeTaskFast(data, &fast) {
			if err := json.Unmarshal(data, &ref); err != nil {
				t.Fatalf("fast decoder accepted what encoding/json rejects (%v): %q", err, data)
			}
			if !reflect.DeepEqual(fast, ref) {
				t.Fatalf("fast decoder differs from encoding/json on %q:\nfast %+v\njson %+v", data, fast, ref)
			}
		}
	})
}

// FuzzDecodeRecord: a decoded record re-encodes to valid JSON that decodes to the same record.
func FuzzDecodeRecord(f *testing.F) {
	r := sampleRecord()
	f.Add(r.AppendJSON(nil))
	f.Add([]byte(`{"schema":1,"varbinds":[{"oid":".1","type":"Counter64","value":18446744073709551615}]}`))
	f.Add([]byte(`{"schema":1,"varbinds":[{"oid":".1","type":"OctetString","value":"zz","encoding":"hex"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := DecodeRecord(data)
		if err != nil {
			return
		}
		out := rec.AppendJSON(nil)
		if !json.Valid(out) {
			t.Fatalf("re-encoding gives invalid JSON: %s", out)
		}
		back, err := DecodeRecord(out)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v\n%s", err, out)
		}
		if string(back.AppendJSON(nil)) != string(out) {
			t.Fatalf("encoding is not stable:\n%s\n%s", out, back.AppendJSON(nil))
		}
	})
}

// FuzzReadHead: any bytes on a result subject give a head or an error,
// never a panic; the fast reader is exact where it answers.
func FuzzReadHead(f *testing.F) {
	r := sampleRecord()
	f.Add(r.AppendJSON(nil))
	r.Error, r.Errors = nil, nil
	f.Add(r.AppendJSON(nil))
	for _, s := range []string{
		`{"schema":1,"task_id":"a","error":{"kind":"k","message":"m"},"error":{"kind":"j"}}`, `{"schema":1,"error":null}`,
		`{"Schema":1}`, `{"ſchema":1}`, `{"schema":1,"task_id":"\ud800"}`, `{"duration_ms":1e400}`, `{"duration_ms":-0.5e-3}`,
		`{"varbinds":[{"oid":".1","value":"\u00e9\"x"},[[]],{}],"x":[1,true,false,null]}`, `{"schema":1,"task_id":"\xff\xfe"}`,
		`{"error":{"kind":"a","KIND":"b"}}`, `{"started_at":"2026-11-25 12:00:00"}`, ` {"schema" : 1 } `, `[]`, `1`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadHead(data)
		if err == nil && (h.Schema != Schema || h.TaskID == "") {
			t.Fatalf("ReadHead accepted %+v from %q", h, data)
		}
		var fast, ref RecordHead
		if readHeadFast(data, &fast) {
			if err := json.Unmarshal(data, &ref); err != nil {
				t.Fatalf("fast reader accepted what encoding/json rejects (%v): %q", err, data)
			}
			if !reflect.DeepEqual(fast, ref) {
				t.Fatalf("fast reader differs from encoding/json on %q:\nfast %+v\njson %+v", data, fast, ref)
			}
		}
	})
}
