// Package promwrite sends samples to a Prometheus remote-write endpoint.
//
// It speaks remote write 1.0: a WriteRequest (protobuf, encoded here by
// hand: four small messages) compressed with snappy's block format and
// POSTed to the endpoint (Prometheus with --web.enable-remote-write-receiver,
// VictoriaMetrics, Mimir). It encodes and sends; batching, retries and
// holding records while the endpoint is down are its caller's.
package promwrite

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/flock-snmp/flock/internal/httpwrite"
	"github.com/flock-snmp/flock/internal/sample"
	"github.com/flock-snmp/flock/internal/task"
)

// Request accumulates time series for one WriteRequest. The zero value is
// empty; Reset reuses its buffers.
type Request struct {
	buf    []byte // the encoded WriteRequest
	series []byte // scratch: one TimeSeries
	labels []sample.Label
	n      int
}

// Reset empties r, keeping its buffers.
func (r *Request) Reset() { r.buf, r.n = r.buf[:0], 0 }

// Len is the number of series in r.
func (r *Request) Len() int { return r.n }

// AddRecord adds one series per sample of rec's (from sample.Converter),
// each labelled __name__, host and site besides the sample's own labels,
// at the time the poll began.
func (r *Request) AddRecord(rec *task.HostRecord, samples []sample.Sample) {
	ts := sample.Time(rec).UnixMilli()
	for i := range samples {
		s := &samples[i]
		r.labels = append(r.labels[:0], sample.Label{Name: "__name__", Value: s.Name},
			sample.Label{Name: "host", Value: rec.Host}, sample.Label{Name: "site", Value: rec.Site})
		r.labels = append(r.labels, s.Labels...)
		r.add(r.labels, s.Value, ts)
	}
}

// add encodes one TimeSeries{labels, [sample]} into r.buf as field 1.
func (r *Request) add(labels []sample.Label, value float64, ts int64) {
	// Remote write wants the labels sorted by name.
	slices.SortFunc(labels, func(a, b sample.Label) int { return strings.Compare(a.Name, b.Name) })
	ser := r.series[:0]
	for _, l := range labels {
		if l.Value == "" {
			continue // an empty value is no label
		}
		n := len(l.Name) + len(l.Value) + sizeVarint(uint64(len(l.Name))) + sizeVarint(uint64(len(l.Value))) + 2
		ser = appendTag(ser, 1, 2)
		ser = binary.AppendUvarint(ser, uint64(n))
		ser = appendString(ser, 1, l.Name)
		ser = appendString(ser, 2, l.Value)
	}
	// Sample{value double = 1, timestamp int64 = 2}
	smp := 1 + 8 + 1 + sizeVarint(uint64(ts))
	ser = appendTag(ser, 2, 2)
	ser = binary.AppendUvarint(ser, uint64(smp))
	ser = appendTag(ser, 1, 1)
	ser = binary.LittleEndian.AppendUint64(ser, math.Float64bits(value))
	ser = appendTag(ser, 2, 0)
	ser = binary.AppendUvarint(ser, uint64(ts))
	r.series = ser
	r.buf = appendTag(r.buf, 1, 2)
	r.buf = binary.AppendUvarint(r.buf, uint64(len(ser)))
	r.buf = append(r.buf, ser...)
	r.n++
}

func appendTag(b []byte, field, wire int) []byte {
	return binary.AppendUvarint(b, uint64(field<<3|wire))
}

func appendString(b []byte, field int, s string) []byte {
	b = appendTag(b, field, 2)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func sizeVarint(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// Client posts WriteRequests to one endpoint.
type Client struct {
	target *httpwrite.Target
	header http.Header // the same for every request
	body   []byte      // scratch: the compressed request
}

// New checks the endpoint's URL (http or https, with a host) and returns
// a client whose requests time out after timeout.
func New(endpoint string, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("remote write URL %q: %w", endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("remote write URL %q: want http:// or https:// and a host, e.g. http://prometheus.example.net:9090/api/v1/write", endpoint)
	}
	return &Client{target: httpwrite.New(endpoint, u.Redacted(), timeout), header: http.Header{
		"Content-Encoding":                  {"snappy"},
		"Content-Type":                      {"application/x-protobuf"},
		"X-Prometheus-Remote-Write-Version": {"0.1.0"},
		"User-Agent":                        {"flock"},
	}}, nil
}

// WithToken has c send token as a bearer token (Authorization: Bearer),
// as Mimir's and VictoriaMetrics' authenticating proxies take it.
func (c *Client) WithToken(token string) *Client {
	if token != "" {
		c.header.Set("Authorization", "Bearer "+token)
	}
	return c
}

// ErrRejected is wrapped when the endpoint refused a request for good
// (4xx): sending it again would not help.
var ErrRejected = errors.New("rejected by the remote write endpoint")

// Send posts r. An error wrapping ErrRejected is final (the server's
// answer is in it); any other (5xx, no connection) may pass if retried.
// Not safe for concurrent use.
func (c *Client) Send(ctx context.Context, r *Request) error {
	c.body = s2.EncodeSnappy(c.body[:cap(c.body)], r.buf)
	return c.target.Post(ctx, c.body, c.header, fmt.Sprintf("remote write of %d series", r.n), ErrRejected)
}
