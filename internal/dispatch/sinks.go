package dispatch

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/flock-snmp/flock/internal/config"
)

// Sink receives each HostRecord once, as one JSON line.
type Sink interface {
	Write(record []byte) error
	Close() error
}

// OpenSinks opens the configured sinks; stdout is where "stdout" sinks write.
func OpenSinks(cfgs []config.Sink, stdout io.Writer) ([]Sink, error) {
	var out []Sink
	for i, c := range cfgs {
		switch c.Type {
		case "stdout":
			out = append(out, &lineSink{w: stdout})
		case "file":
			if err := os.MkdirAll(filepath.Dir(c.Path), 0o750); err != nil {
				closeAll(out)
				return nil, fmt.Errorf("sinks[%d]: %w", i, err)
			}
			f, err := os.OpenFile(c.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
			if err != nil {
				closeAll(out)
				return nil, fmt.Errorf("sinks[%d]: %w", i, err)
			}
			out = append(out, &lineSink{w: f, c: f})
		default:
			closeAll(out)
			return nil, fmt.Errorf("sinks[%d]: unknown type %q", i, c.Type)
		}
	}
	return out, nil
}

func closeAll(sinks []Sink) error {
	var errs []error
	for _, s := range sinks {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// lineSink writes JSON lines, each in one write so concurrent appenders to
// the same file never interleave within a line.
type lineSink struct {
	mu  sync.Mutex
	w   io.Writer
	c   io.Closer
	buf []byte
}

func (s *lineSink) Write(record []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(append(s.buf[:0], record...), '\n')
	_, err := s.w.Write(s.buf)
	return err
}

func (s *lineSink) Close() error {
	if s.c == nil {
		return nil
	}
	return s.c.Close()
}
