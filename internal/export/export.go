// Package export delivers HostRecords to one metric output at least once.
//
// A Writer reads the records of its sink from a Source (the sink's own
// durable consumer on the results stream), turns each into samples
// (internal/sample, with the host's lookups and info), adds them to its
// Output's batch and sends the batch; only a batch the output accepted is
// acknowledged. While the output cannot write (no connection, 5xx, 429)
// the batch is held, unacknowledged, and sent again with a growing back-off:
// the records behind it wait in the results stream, not in memory, so an
// outage costs a bounded amount of memory however long it lasts, and the
// sink catches up in order when the output returns. An output that refuses
// a batch for good (4xx) is not retried: the refusal is logged with the
// server's answer and the records are acknowledged (they stay in the
// HostRecords). Each sink has its own Writer and Source, so one sink's
// outage never stalls another's.
package export

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/flock-snmp/flock/internal/sample"
	"github.com/flock-snmp/flock/internal/task"
)

// Msg is one delivered record (jetstream.Msg satisfies it).
type Msg interface {
	Subject() string
	Data() []byte
	Ack() error
	// InProgress tells the source the record is still being worked on, so
	// it is not handed to another writer while its output is down.
	InProgress() error
}

// Source delivers a sink's records (internal/natsbus adapts a durable
// consumer to it).
type Source interface {
	// Fetch appends up to max records to dst, waiting up to wait for them.
	Fetch(max int, wait time.Duration, dst []Msg) ([]Msg, error)
	// Pending is how many records the sink has not acknowledged yet.
	Pending(ctx context.Context) (uint64, error)
}

// Output is one metric output's batch and the way to send it.
type Output interface {
	// Add adds one record's samples to the batch.
	Add(rec *task.HostRecord, samples []sample.Sample)
	// Send sends the batch. An error for which Final is true will not pass
	// by retrying (the server refused the content).
	Send(ctx context.Context) error
	Final(err error) bool
	// Reset empties the batch.
	Reset()
}

// Profiles gives a host's profile (its modules' lookups and info); nil
// for a host it does not know, whose samples then carry neither.
type Profiles func(site, hostKey string) *sample.Profile

// Writer moves one sink's records from its Source to its Output.
type Writer struct {
	Name      string
	Source    Source
	Output    Output
	Converter *sample.Converter
	Profiles  Profiles
	// Batch is how many records one write carries at most.
	Batch   int
	Log     *slog.Logger
	Metrics *Metrics
	// MaxBackoff bounds the wait between attempts while the output is
	// down (default 10s; it must stay below the source's ack wait).
	MaxBackoff time.Duration
}

// fetchWait is how long a fetch waits for records: the latency a record
// may add while the sink is quiet, and how long a stopping writer waits.
const fetchWait = time.Second

// Run writes records until ctx ends. The batch in hand when it ends is not
// acknowledged: the source delivers it again, to this sink's next writer.
func (w *Writer) Run(ctx context.Context) error {
	m := w.Metrics.sink(w.Name)
	go w.watchPending(ctx, m)
	var (
		msgs    []Msg
		samples []sample.Sample
		down    bool // the output failed its last attempt: an outage is under way
		since   time.Time
	)
	for ctx.Err() == nil {
		var err error
		msgs, err = w.Source.Fetch(w.Batch, fetchWait, msgs[:0])
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			w.Log.Warn("sink cannot read its records; trying again", "sink", w.Name, "err", err)
			sleep(ctx, fetchWait)
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		w.Output.Reset()
		n := 0
		for _, msg := range msgs {
			rec, err := task.DecodeRecord(msg.Data())
			if err != nil {
				// Delivering it again would not make it readable.
				w.Log.Error("unreadable record refused by the sink; not written", "sink", w.Name, "subject", msg.Subject(), "err", err)
				m.refused.Inc()
				continue
			}
			samples = w.Converter.ConvertWith(&rec, w.Profiles(rec.Site, rec.HostKey), samples[:0])
			w.Output.Add(&rec, samples)
			n += len(samples)
		}
		for attempt := 0; ; attempt++ {
			err := w.Output.Send(ctx)
			if err == nil {
				m.records.Add(float64(len(msgs)))
				m.samples.Add(float64(n))
				break
			}
			if ctx.Err() != nil {
				return nil // held: redelivered to the next writer
			}
			m.errors.Inc()
			if w.Output.Final(err) {
				w.Log.Error("sink refused a batch: not retried; its records are acknowledged (they stay in the HostRecords)",
					"sink", w.Name, "records", len(msgs), "samples", n, "err", err)
				m.rejected.Add(float64(len(msgs)))
				break
			}
			if !down {
				down, since = true, time.Now()
				w.Log.Warn("sink cannot write: holding its records in the results stream until it can",
					"sink", w.Name, "records", len(msgs), "err", err)
			} else {
				w.Log.Debug("sink still cannot write", "sink", w.Name, "attempt", attempt+1, "err", err)
			}
			for _, msg := range msgs {
				_ = msg.InProgress()
			}
			sleep(ctx, w.backoff(attempt))
		}
		if down {
			down = false
			w.Log.Info("sink writes again", "sink", w.Name, "outage", time.Since(since).Round(time.Millisecond))
		}
		for _, msg := range msgs {
			if err := msg.Ack(); err != nil {
				// Delivered again later and written twice: the samples are the
				// same, the databases keep one.
				w.Log.Debug("sink could not acknowledge a written record", "sink", w.Name, "subject", msg.Subject(), "err", err)
			}
		}
	}
	return nil
}

// backoff is the wait after the attempt-th failure: 0.5 s doubling to
// MaxBackoff, with a fifth of jitter so writers of one sink spread out.
func (w *Writer) backoff(attempt int) time.Duration {
	ceiling := w.MaxBackoff
	if ceiling <= 0 {
		ceiling = 10 * time.Second
	}
	d := 500 * time.Millisecond << min(attempt, 10)
	d = min(d, ceiling)
	return d - time.Duration(rand.Int64N(int64(d/5)+1))
}

// watchPending keeps the sink's pending gauge current.
func (w *Writer) watchPending(ctx context.Context, m *sinkMetrics) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := w.Source.Pending(c)
		cancel()
		if err == nil {
			m.pending.Set(float64(n))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Drain waits until the sink has acknowledged every record stored so far
// (Pending is 0) or ctx ends, which it reports with the records left.
func Drain(ctx context.Context, src Source) (uint64, error) {
	for {
		n, err := src.Pending(ctx)
		if err == nil && n == 0 {
			return 0, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return n, errors.Join(ctx.Err(), err)
			}
			return n, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
