package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/fleet"
	"github.com/flock-snmp/flock/internal/task"
)

// Bus is what a one-shot run needs from the message bus.
type Bus interface {
	PublishTasks(ctx context.Context, tasks []task.PollTask) []error
	// WatchRecords delivers every site's records stored after it began.
	WatchRecords(ctx context.Context, since time.Time, fn func(subject string, data []byte)) (stop func(), err error)
	// WatchPollers delivers the last heartbeat of each poller, then new ones.
	WatchPollers(ctx context.Context, fn func(hb task.Heartbeat, stored time.Time)) (stop func(), err error)
}

// Summary counts the outcome of a one-shot run.
type Summary struct {
	Hosts      int
	OK         int // records without error
	Failed     int // records with an error
	Missing    int // hosts without a record by the deadline
	Duplicates int // extra records for a task already answered (dropped)
	Elapsed    time.Duration
	// Unpublished counts tasks that could not be queued (a full queue, an
	// unreachable bus); their hosts are among the missing.
	Unpublished int
	// MissingBySite breaks Missing down by site, in site order.
	MissingBySite []SiteMissing
}

// SiteMissing is how many hosts of a site have no record, and whether the
// site had no live poller at the end of the run.
type SiteMissing struct {
	Site     string
	N        int
	NoPoller bool
}

func (s Summary) missing() string {
	if len(s.MissingBySite) == 0 {
		return fmt.Sprint(s.Missing)
	}
	parts := make([]string, len(s.MissingBySite))
	for i, m := range s.MissingBySite {
		if m.NoPoller {
			parts[i] = "site " + m.Site + ": no poller"
		} else {
			parts[i] = fmt.Sprintf("site %s: %d", m.Site, m.N)
		}
	}
	return fmt.Sprintf("%d (%s)", s.Missing, strings.Join(parts, "; "))
}

// Complete reports whether every host answered without error.
func (s Summary) Complete() bool { return s.Failed == 0 && s.Missing == 0 }

// String is the one-line summary printed on stderr.
func (s Summary) String() string {
	return fmt.Sprintf("flock: hosts=%d ok=%d failed=%d missing=%s duplicates=%d elapsed=%.3fs unpublished=%d",
		s.Hosts, s.OK, s.Failed, s.missing(), s.Duplicates, s.Elapsed.Seconds(), s.Unpublished)
}

// OnceTimeout is how long a one-shot run waits for records: the configured
// dispatcher.once_timeout, or the slowest host's poll budget twice over plus
// one ack_wait, so a task whose poller died is redelivered and answered.
func OnceTimeout(cfg *config.Config) time.Duration {
	if cfg.Dispatcher.OnceTimeout > 0 {
		return cfg.Dispatcher.OnceTimeout
	}
	return 2*cfg.MaxPollTimeout() + cfg.NATS.AckWait + 5*time.Second
}

// Tasks builds one task per host, of the host's site, for a one-shot run
// starting at now.
func Tasks(cfg *config.Config, now time.Time, validFor time.Duration) []task.PollTask {
	out := make([]task.PollTask, len(cfg.Hosts))
	for i := range cfg.Hosts {
		out[i] = newTask(&cfg.Hosts[i], now, now, now.Add(validFor))
	}
	return out
}

// RunOnce polls every host once: it publishes one task per host, writes each
// host's first record to out as one JSON line as it arrives, and returns
// when every host has a record, the timeout passes, or ctx ends.
func RunOnce(ctx context.Context, bus Bus, cfg *config.Config, out io.Writer, log *slog.Logger) (Summary, error) {
	return RunOnceProgress(ctx, bus, cfg, out, log, nil)
}

// RunOnceProgress is RunOnce calling progress (if not nil) with the counts
// so far each time a host's first record arrives.
func RunOnceProgress(ctx context.Context, bus Bus, cfg *config.Config, out io.Writer, log *slog.Logger, progress func(Summary)) (Summary, error) {
	start := time.Now()
	timeout := OnceTimeout(cfg)
	tasks := Tasks(cfg, start, timeout)
	sum := Summary{Hosts: len(tasks)}
	if len(tasks) == 0 {
		return sum, errors.New("no hosts to poll: the configuration's hosts list is empty")
	}
	pending := make(map[string]bool, len(tasks)) // by task id
	for i := range tasks {
		pending[tasks[i].ID] = true
	}
	var mu sync.Mutex // the callbacks run on the consumer's goroutine
	answered := make(map[string]bool, len(tasks))
	want := len(tasks) // lowered to the tasks queued, once they are
	allIn := make(chan struct{})
	allInOnce := sync.OnceFunc(func() { close(allIn) })
	sink := &firstErrorSink{line: lineSink{w: out}}
	c := &collector{
		sinks: []Sink{sink}, states: newStates(), log: log,
		accept: func(h *task.RecordHead) bool { return pending[h.TaskID] }, // not another run's or dispatcher's record
		written: func(h *task.RecordHead, _ bool) {
			mu.Lock()
			defer mu.Unlock()
			answered[h.TaskID] = true
			if h.Error == nil {
				sum.OK++
			} else {
				sum.Failed++
			}
			if progress != nil {
				progress(sum)
			}
			if len(answered) >= want {
				allInOnce()
			}
		},
		duplicate: func(*task.RecordHead) {
			mu.Lock()
			sum.Duplicates++
			mu.Unlock()
		},
	}

	// Watch for new records before publishing: no record of these tasks can
	// exist before they are published, so nothing is missed, whatever the
	// server's clock says.
	stop, err := bus.WatchRecords(ctx, time.Time{}, func(subject string, data []byte) {
		_ = c.collect(subject, data, false) // in memory, no sink error: nothing to deliver again
	})
	if err != nil {
		return sum, err
	}
	pollers := fleet.New(log)
	stopPollers, err := bus.WatchPollers(ctx, func(hb task.Heartbeat, stored time.Time) { pollers.Observe(hb, stored) })
	if err != nil {
		stop()
		return sum, err
	}
	defer stopPollers()

	unpublished := publishAll(ctx, bus, tasks, start.Add(timeout), log)
	mu.Lock()
	// A task that was never queued cannot be answered: the run ends when the
	// queued ones are, not at its timeout (their hosts are reported missing).
	if want = len(tasks) - unpublished; len(answered) >= want {
		allInOnce()
	}
	mu.Unlock()
	remaining := time.Until(start.Add(timeout))
	timer := time.NewTimer(remaining)
	defer timer.Stop()
	select {
	case <-allIn:
	case <-timer.C:
		log.Warn("deadline passed before every host answered", "timeout", timeout)
	case <-ctx.Done():
		log.Warn("interrupted before every host answered")
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	sum.Elapsed = time.Since(start)
	sum.Unpublished = unpublished
	sum.Missing = len(tasks) - len(answered)
	live := pollers.Live(time.Now())
	bySite := map[string]int{}
	reported := 0
	for i := range tasks {
		if !answered[tasks[i].ID] {
			bySite[tasks[i].Site]++
			if reported < 20 {
				log.Warn("no record", "host", tasks[i].Host, "site", tasks[i].Site, "task_id", tasks[i].ID)
			}
			reported++
		}
	}
	if reported > 20 {
		log.Warn("more hosts without a record", "count", reported-20)
	}
	for _, site := range cfg.Sites() {
		if n := bySite[site]; n > 0 {
			m := SiteMissing{Site: site, N: n, NoPoller: len(live[site]) == 0}
			sum.MissingBySite = append(sum.MissingBySite, m)
			if m.NoPoller {
				log.Warn("site has no live poller: its hosts got no record", "site", site, "missing", n, "consumer", task.PollerConsumer(site))
			}
		}
	}
	if err := sink.failed(); err != nil {
		return sum, fmt.Errorf("write records: %w", err)
	}
	return sum, nil
}

// firstErrorSink writes records as lines until a write fails; then it keeps
// that error and writes no more, without refusing the records: a one-shot
// run still counts every host that answered, and ends with the error.
type firstErrorSink struct {
	line lineSink
	mu   sync.Mutex
	err  error
}

func (s *firstErrorSink) Write(record []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = s.line.Write(record)
	}
	return nil
}

func (s *firstErrorSink) Close() error { return nil }

func (s *firstErrorSink) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// publishAll publishes the tasks. A host whose previous task is still queued
// (left by an earlier run) is retried until that task expires or the
// deadline passes, so one stale task does not cost the host this run.
// It returns how many tasks were never queued.
func publishAll(ctx context.Context, bus Bus, tasks []task.PollTask, deadline time.Time, log *slog.Logger) int {
	todo := tasks
	warned := map[string]bool{}
	failed := 0
	for {
		errs := bus.PublishTasks(ctx, todo)
		var busy []task.PollTask
		for i, err := range errs {
			switch {
			case err == nil:
			case errors.Is(err, task.ErrHostBusy):
				if !warned[todo[i].Host] {
					log.Warn("host still has a queued task from an earlier run; retrying", "host", todo[i].Host)
					warned[todo[i].Host] = true
				}
				busy = append(busy, todo[i])
			default:
				failed++
				log.Error("task not published", "host", todo[i].Host, "err", err)
			}
		}
		if len(busy) == 0 || time.Now().After(deadline) {
			return failed + len(busy)
		}
		todo = busy
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return failed + len(busy)
		}
	}
}
