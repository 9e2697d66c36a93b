// Package influx writes samples to InfluxDB as line protocol.
//
// The lines have the shape of Telegraf's inputs.snmp, which InfluxDB users'
// dashboards expect: measurement "snmp" for a host's scalars, the table's
// name ("ifXTable") for each row, one line per row; the host, the site, the
// row's index and lookup values (ifIndex, ifName) as tags; MIB names as
// fields, integers as integer fields. It encodes and sends; batching,
// retries and holding records while the database is down are its caller's.
package influx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/flock-snmp/flock/internal/httpwrite"
	"github.com/flock-snmp/flock/internal/sample"
	"github.com/flock-snmp/flock/internal/task"
)

// Scalars is the measurement of a host's scalars and the poll's own samples.
const Scalars = "snmp"

// Batch accumulates lines for one write. The zero value is empty; Reset
// reuses its buffer.
type Batch struct {
	buf   []byte
	lines int
	rows  map[string]int // row key -> index in order, during AddRecord
	order []row
}

type row struct {
	head   []byte // measurement and tags
	fields []byte
}

// Reset empties b, keeping its buffer.
func (b *Batch) Reset() { b.buf, b.lines = b.buf[:0], 0 }

// Lines is the number of lines in b.
func (b *Batch) Lines() int { return b.lines }

// Bytes is the batch's line protocol.
func (b *Batch) Bytes() []byte { return b.buf }

// AddRecord adds rec's samples (from sample.Converter): one line for its
// scalars and the poll's own samples, one per table row.
func (b *Batch) AddRecord(rec *task.HostRecord, samples []sample.Sample) {
	if b.rows == nil {
		b.rows = map[string]int{}
	}
	clear(b.rows)
	b.order = b.order[:0]
	ts := strconv.AppendInt(nil, rec.StartedAt.UnixNano(), 10)
	var key []byte
	for i := range samples {
		s := &samples[i]
		meas := s.Table
		if meas == "" {
			meas = Scalars
		}
		key = append(key[:0], meas...)
		for _, l := range s.Labels {
			key = append(append(append(append(key, 0), l.Name...), 0), l.Value...)
		}
		j, ok := b.rows[string(key)]
		if !ok {
			j = len(b.order)
			b.rows[string(key)] = j
			h := appendEscaped(nil, meas, measEscapes)
			h = appendTag(h, "host", rec.Host)
			h = appendTag(h, "site", rec.Site)
			for _, l := range s.Labels {
				h = appendTag(h, l.Name, l.Value)
			}
			b.order = append(b.order, row{head: h})
		}
		r := &b.order[j]
		if len(r.fields) > 0 {
			r.fields = append(r.fields, ',')
		}
		r.fields = appendEscaped(r.fields, s.Name, keyEscapes)
		r.fields = append(r.fields, '=')
		switch {
		case s.Integer && math.Abs(s.Value) < 1<<63:
			// The exact integer, not the float's rounding of it (a Counter64
			// past 2^53).
			r.fields = strconv.AppendInt(r.fields, s.Int, 10)
			r.fields = append(r.fields, 'i')
		default:
			r.fields = strconv.AppendFloat(r.fields, s.Value, 'g', -1, 64)
		}
	}
	for _, r := range b.order {
		b.buf = append(b.buf, r.head...)
		b.buf = append(b.buf, ' ')
		b.buf = append(b.buf, r.fields...)
		b.buf = append(b.buf, ' ')
		b.buf = append(b.buf, ts...)
		b.buf = append(b.buf, '\n')
		b.lines++
	}
}

func appendTag(b []byte, k, v string) []byte {
	if v == "" {
		return b // an empty tag value is no tag
	}
	b = append(b, ',')
	b = appendEscaped(b, k, keyEscapes)
	b = append(b, '=')
	return appendEscaped(b, v, keyEscapes)
}

const (
	measEscapes = ", "  // a measurement escapes commas and spaces
	keyEscapes  = ",= " // tag keys, tag values and field keys also equals signs
)

func appendEscaped(b []byte, s, special string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n' || c == '\r':
			b = append(b, ' ') // a line break would end the line
			continue
		case c == '\\' || strings.IndexByte(special, c) >= 0:
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return b
}

// Client posts batches to one InfluxDB write URL.
type Client struct {
	target *httpwrite.Target
	header http.Header // the same for every request
}

// New checks the full write URL (http://host:8086/write?db=flock for
// InfluxDB 1.x; .../api/v2/write?org=...&bucket=... for 2.x with a token)
// and returns a client whose requests time out after timeout.
func New(writeURL, token string, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(writeURL)
	if err != nil {
		return nil, fmt.Errorf("influx URL %q: %w", writeURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("influx URL %q: want http:// or https:// and a host, e.g. http://influxdb.example.net:8086/write?db=flock", writeURL)
	}
	q := u.Query()
	switch {
	case strings.HasSuffix(u.Path, "/api/v2/write"):
		if q.Get("bucket") == "" || q.Get("org") == "" {
			return nil, fmt.Errorf("influx URL %q: a v2 write URL names its org and bucket (?org=...&bucket=...)", writeURL)
		}
	case strings.HasSuffix(u.Path, "/write"):
		if q.Get("db") == "" {
			return nil, fmt.Errorf("influx URL %q: a v1 write URL names its database (?db=...)", writeURL)
		}
	default:
		return nil, fmt.Errorf("influx URL %q: want the full write URL, ending in /write?db=... (v1) or /api/v2/write?org=...&bucket=... (v2)", writeURL)
	}
	for _, secret := range []string{"p", "password", "token"} {
		if q.Has(secret) {
			q.Set(secret, "xxxxx")
		}
	}
	shown := *u
	shown.RawQuery, shown.User = q.Encode(), nil
	header := http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "User-Agent": {"flock"}}
	if token != "" {
		header.Set("Authorization", "Token "+token)
	}
	return &Client{target: httpwrite.New(writeURL, shown.String(), timeout), header: header}, nil
}

// ErrRejected is wrapped when the database refused a write for good (4xx).
var ErrRejected = errors.New("rejected by InfluxDB")

// Send posts b. An error wrapping ErrRejected is final (the server's answer
// is in it); any other (5xx, no connection) may pass if retried.
func (c *Client) Send(ctx context.Context, b *Batch) error {
	return c.target.Post(ctx, b.buf, c.header, fmt.Sprintf("influx write of %d lines", b.lines), ErrRejected)
}
