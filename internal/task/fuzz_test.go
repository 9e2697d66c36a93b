package task

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeTask: any bytes on a task subject give a task or an error wrapping ErrBadTask, never a panic.
func FuzzDecodeTask(f *testing.F) {
	good, _ := json.Marshal(sampleTask())
	f.Add(good)
	f.Add([]byte(`{"schema":1}`))
	f.Add([]byte(`{"schema":1,"tables":[{"root":".1.3","columns":[]}]}`))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := DecodeTask(data)
		if err == nil {
			if tk.Validate() != nil {
				t.Fatalf("DecodeTask accepted a task that does not validate: %s", data)
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
