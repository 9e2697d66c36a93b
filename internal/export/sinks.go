package export

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/sample"
)

// OpenSource binds to the records of metric sink name, which writes
// batches of batch records (natsbus.Bus's SinkRecords, adapted).
type OpenSource func(ctx context.Context, name string, batch int) (Source, error)

// Sinks are the running writers of a configuration's metric sinks.
type Sinks struct {
	writers  []*Writer
	wg       sync.WaitGroup
	conv     *sample.Converter
	profiles atomic.Pointer[map[[2]string]*sample.Profile] // by site and host key
	sinks    []config.Sink                                 // as started, to tell a reload's changes
	log      *slog.Logger
}

// Start runs a Writer for each metric sink of cfg, and for metrics_subject
// when set (publishing through pub), until ctx ends. No metric sink: a
// Sinks with nothing to run.
func Start(ctx context.Context, cfg *config.Config, open OpenSource, pub Publisher, m *Metrics, log *slog.Logger) (*Sinks, error) {
	sinks := cfg.MetricSinks()
	s := &Sinks{sinks: sinks, log: log}
	if len(sinks) == 0 && !cfg.MetricsSubject {
		return s, nil
	}
	conv, err := sample.NewConverter(cfg.Resolver, nil)
	if err != nil {
		return nil, err
	}
	s.conv = conv
	if err := s.SetHosts(cfg); err != nil {
		return nil, err
	}
	profiles := func(site, hostKey string) (*sample.Profile, bool) {
		m := *s.profiles.Load()
		p, known := m[[2]string{site, hostKey}]
		return p, !known && len(m) > 0
	}
	if len(cfg.Hosts) == 0 {
		log.Info("metric sinks: this configuration has no hosts, so samples carry no lookups or info (give the writer the dispatcher's inventory for them)")
	}
	add := func(name string, out Output, batch int) error {
		src, err := open(ctx, name, batch)
		if err != nil {
			return fmt.Errorf("sink %s: %w", name, err)
		}
		s.writers = append(s.writers, &Writer{Name: name, Source: src, Output: out, Converter: conv,
			Profiles: profiles, Batch: batch, Log: log, Metrics: m})
		return nil
	}
	for _, c := range sinks {
		out, err := Open(c)
		if err == nil {
			err = add(c.Name, out, c.BatchRecords)
		}
		if err != nil {
			return nil, err
		}
	}
	if cfg.MetricsSubject {
		if err := add(config.MetricsSubjectSink, Subject(pub), 500); err != nil {
			return nil, err
		}
	}
	for _, w := range s.writers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = w.Run(ctx)
		}()
		log.Info("metric sink writing", "sink", w.Name)
	}
	return s, nil
}

// SetHosts gives the hosts of a reloaded configuration their lookups and
// info from then on. The sinks themselves are those the writers started
// with: a reload that changes them is logged, and needs a restart.
func (s *Sinks) SetHosts(cfg *config.Config) error {
	if s.conv == nil {
		if len(cfg.MetricSinks()) > 0 || cfg.MetricsSubject {
			s.log.Warn("metric sinks added by the reload are not running: restart to start them")
		}
		return nil
	}
	byKey, err := profilesFor(s.conv, cfg.Hosts)
	if err != nil {
		return err
	}
	if s.profiles.Load() != nil && !slices.Equal(s.sinks, cfg.MetricSinks()) {
		s.log.Warn("the reload changes the metric sinks; they are read at start: restart to apply the change")
	}
	s.profiles.Store(&byKey)
	return nil
}

// Names are the running sinks' names.
func (s *Sinks) Names() []string {
	var out []string
	for _, w := range s.writers {
		out = append(out, w.Name)
	}
	return out
}

// Wait returns when every writer has stopped (its context ended).
func (s *Sinks) Wait() { s.wg.Wait() }

// Drain waits until every sink has written every record stored so far, or
// ctx ends: then the error names each sink with the records it has left
// (they wait in the results stream for the sink's next writer).
func (s *Sinks) Drain(ctx context.Context) error {
	left := make([]string, len(s.writers))
	var wg sync.WaitGroup
	for i, w := range s.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n, err := Drain(ctx, w.Source); err != nil {
				left[i] = fmt.Sprintf("%s: %d records not yet written (%v)", w.Name, n, err)
			}
		}()
	}
	wg.Wait()
	left = slices.DeleteFunc(left, func(s string) bool { return s == "" })
	if len(left) > 0 {
		return fmt.Errorf("metric sinks not caught up (%s); they wait in the results stream for the sinks' next writer", strings.Join(left, "; "))
	}
	return nil
}

// profilesFor gives each host of hosts the profile of its modules' lookups
// and info (nil: none); hosts with the same lists share one.
func profilesFor(conv *sample.Converter, hosts []config.Host) (map[[2]string]*sample.Profile, error) {
	byKey := map[[2]string]*sample.Profile{}
	shared := map[string]*sample.Profile{}
	for i := range hosts {
		h := &hosts[i]
		if len(h.Lookups) == 0 && len(h.Info) == 0 {
			byKey[[2]string{h.Site, h.Key}] = nil // known, nothing to add
			continue
		}
		k := strings.Join(h.Lookups, ",") + "|" + strings.Join(h.Info, ",")
		p := shared[k]
		if p == nil {
			var err error
			if p, err = conv.Profile(h.Lookups, h.Info); err != nil {
				return nil, fmt.Errorf("host %s: %w", h.Name, err)
			}
			shared[k] = p
		}
		byKey[[2]string{h.Site, h.Key}] = p
	}
	return byKey, nil
}
