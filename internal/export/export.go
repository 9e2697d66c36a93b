// Package export delivers HostRecords to one metric output at least once.
//
// A Writer reads the records of its sink from a Source (the sink's own
// durable consumer on the results stream, which serves one writer at a
// time: the one it is pinned to), turns each into samples
// (internal/sample, with the host's lookups and info), adds them to its
// Output's batch and sends the batch; only what the output accepted is
// acknowledged. While the output cannot write (no connection, 5xx, 429) the
// batch is handed back and fetched again after a growing back-off: the
// records wait in the results stream, not in memory, so an outage costs a
// bounded amount of memory however long it lasts, and since only the
// pinned writer is served and handed-back records come first, the database
// gets them in order when it returns, however many writers run the sink.
// An output that refuses a batch for good (4xx) is not retried: the batch
// is halved and each half sent again, so only the record that holds the
// refused sample is lost to the sink (logged with the server's answer; it
// stays in the HostRecords). Each sink has its own Writer and Source, so
// one sink's outage never stalls another's.
package export

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/flock-snmp/flock/internal/sample"
	"github.com/flock-snmp/flock/internal/task"
)

// Msg is one delivered record (jetstream.Msg satisfies it).
type Msg interface {
	Subject() string
	Data() []byte
	Ack() error
	// Nak hands the record back at once: the sink's next fetch gets it
	// again, before any newer record.
	Nak() error
}

// Source delivers a sink's records (internal/natsbus adapts a durable
// consumer to it).
type Source interface {
	// Fetch appends up to max records to dst, waiting up to wait for them.
	Fetch(max int, wait time.Duration, dst []Msg) ([]Msg, error)
	// Progress says how far the sink has written the stream.
	Progress(ctx context.Context) (Progress, error)
	// LastStored is the stream sequence of the last record stored.
	LastStored(ctx context.Context) (uint64, error)
	// Release lets another writer of the sink be served at once (a
	// stopping writer's last word).
	Release(ctx context.Context) error
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

// Progress is how far a sink has written the records stored.
type Progress struct {
	// Pending counts the records not acknowledged: stored and not yet
	// delivered, or delivered and not acknowledged.
	Pending uint64
	// AckFloor is the stream sequence up to which every record is
	// acknowledged.
	AckFloor uint64
}

// Profiles gives a host's profile (its modules' lookups and info; nil:
// none), and whether the host is missing from a writer's inventory (one
// with no inventory at all misses none: it was given none on purpose).
type Profiles func(site, hostKey string) (p *sample.Profile, unknown bool)

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
	// down (default 10s; with a write's timeout it must stay below the time
	// the source keeps a silent writer pinned).
	MaxBackoff time.Duration
}

// splitBudget bounds the time one batch may spend in halving a refused
// batch, well inside the source's ack wait (30 s) and pin time (35 s).
const splitBudget = 15 * time.Second

// fetchWait is how long a fetch waits for records: the latency a record
// may add while the sink is quiet, and how long a stopping writer waits.
const fetchWait = time.Second

// Run writes records until ctx ends. The batch in hand when it ends gets
// one more attempt (a write's timeout at most); what is not written is
// handed back, and the source released, so that the sink's next writer
// starts with it at once.
func (w *Writer) Run(ctx context.Context) error {
	m := w.Metrics.sink(w.Name)
	go w.watchPending(ctx, m)
	st := &runState{w: w, m: m, unknown: map[[2]string]bool{}}
	defer func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := w.Source.Release(c); err != nil {
			w.Log.Debug("sink could not release its records for the next writer", "sink", w.Name, "err", err)
		}
	}()
	var (
		msgs       []Msg
		readFailed bool // the last fetch failed: said once per outage
		attempt    int  // failed attempts in a row (the back-off)
	)
	for ctx.Err() == nil {
		var err error
		msgs, err = w.Source.Fetch(w.Batch, fetchWait, msgs[:0])
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			m.errors.Inc()
			if !readFailed {
				readFailed = true
				w.Log.Warn("sink cannot read its records; trying again every second", "sink", w.Name, "err", err)
			}
			sleep(ctx, fetchWait)
			continue
		}
		if readFailed {
			readFailed = false
			w.Log.Info("sink reads its records again", "sink", w.Name)
		}
		if len(msgs) == 0 {
			continue
		}
		st.items = st.items[:0]
		for _, msg := range msgs {
			rec, err := task.DecodeRecord(msg.Data())
			if err != nil {
				// Delivering it again would not make it readable.
				w.Log.Error("unreadable record refused by the sink; not written", "sink", w.Name, "subject", msg.Subject(), "err", err)
				m.refused.Inc()
				_ = msg.Ack()
				continue
			}
			st.items = append(st.items, item{rec: rec, msg: msg})
		}
		// Oldest poll first: records handed back come again mixed with newer
		// ones, and a database that takes a series' samples only in order
		// (Prometheus drops the older one of a request silently) must get
		// each host's in the order they were polled.
		slices.SortStableFunc(st.items, func(a, b item) int { return a.rec.StartedAt.Compare(b.rec.StartedAt) })
		st.until = time.Now().Add(splitBudget)
		out := st.deliver(ctx, st.items)
		for i := range st.items {
			it := &st.items[i]
			if it.done {
				if err := it.msg.Ack(); err != nil {
					// Delivered again later and written twice: the samples are
					// the same, the databases keep one.
					w.Log.Debug("sink could not acknowledge a written record", "sink", w.Name, "subject", it.msg.Subject(), "err", err)
				}
			} else {
				_ = it.msg.Nak() // first again, on the next fetch
			}
		}
		switch out {
		case stopped:
			return nil
		case again:
			sleep(ctx, w.backoff(attempt))
			attempt++
		default:
			attempt = 0
		}
	}
	return nil
}

// item is one record of a batch and the message it came in.
type item struct {
	rec  task.HostRecord
	msg  Msg
	done bool // written, or refused for good: acknowledged
}

// outcome is how a delivery ended.
type outcome int

const (
	written outcome = iota // every item done
	again                  // the output is down: the rest is handed back
	stopped                // ctx ended first: the rest is handed back
	later                  // splitting a refused batch took too long: the rest is handed back, fetched again at once
)

// runState is what one writer keeps from batch to batch.
type runState struct {
	w       *Writer
	m       *sinkMetrics
	items   []item
	samples []sample.Sample
	down    bool      // the output failed its last attempt: an outage is under way
	until   time.Time // splitting a refused batch stops here (splitBudget)
	since   time.Time
	unknown map[[2]string]bool // hosts not in the inventory, said once each
}

// deliver writes items in one request. A batch the output refuses for
// good is split in halves and each sent again, down to the one record
// that is refused: one bad sample (out of order, say) costs its own
// record, not the batch's.
func (st *runState) deliver(ctx context.Context, items []item) outcome {
	w, m := st.w, st.m
	if len(items) == 0 {
		return written
	}
	w.Output.Reset()
	n := 0
	for i := range items {
		rec := &items[i].rec
		p, unknown := w.Profiles(rec.Site, rec.HostKey)
		if unknown {
			if k := [2]string{rec.Site, rec.HostKey}; !st.unknown[k] && len(st.unknown) < 10_000 {
				st.unknown[k] = true
				w.Log.Warn("host not in this writer's inventory: its samples carry no lookups or info (give the writer the dispatcher's configuration)",
					"sink", w.Name, "host", rec.Host, "site", rec.Site)
			}
		}
		st.samples = w.Converter.ConvertWith(rec, p, st.samples[:0])
		w.Output.Add(rec, st.samples)
		n += len(st.samples)
	}
	// Not cancelled with ctx: a stopping writer finishes the write under way
	// (bounded by the output's timeout) rather than leave a half-sent batch.
	err := w.Output.Send(context.WithoutCancel(ctx))
	if err == nil {
		for i := range items {
			items[i].done = true
		}
		m.records.Add(float64(len(items)))
		m.samples.Add(float64(n))
		if st.down {
			st.down = false
			w.Log.Info("sink writes again", "sink", w.Name, "outage", time.Since(st.since).Round(time.Millisecond))
		}
		return written
	}
	m.errors.Inc()
	if w.Output.Final(err) {
		if len(items) > 1 {
			if time.Now().After(st.until) {
				// Acknowledge what is done, hand back the rest and fetch it
				// again: a writer must keep asking for records to stay the
				// one served, and answer them within the ack wait.
				return later
			}
			half := len(items) / 2
			if out := st.deliver(ctx, items[:half]); out != written {
				return out
			}
			return st.deliver(ctx, items[half:])
		}
		w.Log.Error("sink refused a record: not retried; acknowledged unwritten (it stays in the HostRecords)",
			"sink", w.Name, "host", items[0].rec.Host, "task_id", items[0].rec.TaskID, "samples", n, "err", err)
		m.rejected.Inc()
		items[0].done = true
		return written
	}
	if ctx.Err() != nil {
		return stopped
	}
	if !st.down {
		st.down, st.since = true, time.Now()
		w.Log.Warn("sink cannot write: holding its records in the results stream until it can",
			"sink", w.Name, "records", len(items), "err", err)
	} else {
		w.Log.Debug("sink still cannot write", "sink", w.Name, "err", err)
	}
	return again
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

// watchPending keeps the sink's pending gauge current. A pending count it
// cannot read is shown as -1, not as the last one read.
func (w *Writer) watchPending(ctx context.Context, m *sinkMetrics) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		p, err := w.Source.Progress(c)
		cancel()
		if err == nil {
			m.pending.Set(float64(p.Pending))
		} else if ctx.Err() == nil {
			m.pending.Set(-1)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Drain waits until the sink has acknowledged every record stored when it
// was called (records stored since do not hold it up), or ctx ends, which
// it reports with the records left.
func Drain(ctx context.Context, src Source) (uint64, error) {
	upTo, err := src.LastStored(ctx)
	if err != nil {
		return 0, err
	}
	for {
		p, err := src.Progress(ctx)
		if err == nil && (p.AckFloor >= upTo || p.Pending == 0) {
			return 0, nil
		}
		left := uint64(0)
		if err == nil && upTo > p.AckFloor {
			left = upTo - p.AckFloor
		}
		select {
		case <-ctx.Done():
			return left, errors.Join(ctx.Err(), err)
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
