package export

import (
	"context"
	"errors"
	"fmt"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/influx"
	"github.com/flock-snmp/flock/internal/promwrite"
	"github.com/flock-snmp/flock/internal/sample"
	"github.com/flock-snmp/flock/internal/task"
)

// Open makes the output of metric sink s (prometheus_remote_write, influx).
func Open(s config.Sink) (Output, error) {
	switch s.Type {
	case config.SinkPrometheusRemoteWrite:
		c, err := promwrite.New(s.URL, s.Timeout)
		if err != nil {
			return nil, fmt.Errorf("sink %s: %w", s.Name, err)
		}
		return &remoteWrite{client: c.WithToken(s.Token.Reveal())}, nil
	case config.SinkInflux:
		c, err := influx.New(s.URL, s.Token.Reveal(), s.Timeout)
		if err != nil {
			return nil, fmt.Errorf("sink %s: %w", s.Name, err)
		}
		return &influxWrite{client: c}, nil
	}
	return nil, fmt.Errorf("sink %s: %q is not a metric sink type", s.Name, s.Type)
}

// remoteWrite is Prometheus remote write 1.0.
type remoteWrite struct {
	client *promwrite.Client
	req    promwrite.Request
}

func (o *remoteWrite) Add(rec *task.HostRecord, s []sample.Sample) { o.req.AddRecord(rec, s) }
func (o *remoteWrite) Reset()                                      { o.req.Reset() }
func (o *remoteWrite) Final(err error) bool                        { return errors.Is(err, promwrite.ErrRejected) }
func (o *remoteWrite) Send(ctx context.Context) error {
	if o.req.Len() == 0 {
		return nil
	}
	return o.client.Send(ctx, &o.req)
}

// influxWrite is InfluxDB line protocol over HTTP.
type influxWrite struct {
	client *influx.Client
	batch  influx.Batch
}

func (o *influxWrite) Add(rec *task.HostRecord, s []sample.Sample) { o.batch.AddRecord(rec, s) }
func (o *influxWrite) Reset()                                      { o.batch.Reset() }
func (o *influxWrite) Final(err error) bool                        { return errors.Is(err, influx.ErrRejected) }
func (o *influxWrite) Send(ctx context.Context) error {
	if o.batch.Lines() == 0 {
		return nil
	}
	return o.client.Send(ctx, &o.batch)
}

// Publisher publishes without storing (natsbus.Bus satisfies it).
type Publisher interface {
	PublishCore(subject string, data []byte) error
	FlushCore(ctx context.Context) error
}

// Subject publishes each record's samples as line protocol on the host's
// flock.metrics.<site>.<hostkey> (metrics_subject), for Telegraf's
// inputs.nats_consumer with data_format "influx". Core NATS: subscribers
// listening get them, nothing is stored for those that are not.
func Subject(p Publisher) Output { return &subjectOutput{pub: p} }

type subjectOutput struct {
	pub   Publisher
	batch influx.Batch
	buf   []byte
	parts []part
	sent  int // parts published: a retry goes on from there
}

type part struct {
	subject  string
	from, to int
}

func (o *subjectOutput) Add(rec *task.HostRecord, s []sample.Sample) {
	o.batch.Reset()
	o.batch.AddRecord(rec, s)
	from := len(o.buf)
	o.buf = append(o.buf, o.batch.Bytes()...)
	o.parts = append(o.parts, part{task.MetricsSubject(rec.Site, rec.HostKey), from, len(o.buf)})
}

func (o *subjectOutput) Reset()           { o.buf, o.parts, o.sent = o.buf[:0], o.parts[:0], 0 }
func (o *subjectOutput) Final(error) bool { return false }
func (o *subjectOutput) Send(ctx context.Context) error {
	for ; o.sent < len(o.parts); o.sent++ {
		p := o.parts[o.sent]
		if err := o.pub.PublishCore(p.subject, o.buf[p.from:p.to]); err != nil {
			return err
		}
	}
	return o.pub.FlushCore(ctx)
}
