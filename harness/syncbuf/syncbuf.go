// Package syncbuf is a buffer that one goroutine (a process's output, a
// logger) writes while a test reads it.
package syncbuf

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer is a bytes.Buffer safe for a writer and readers; the zero value
// is empty and ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Lines are what was written, split at newlines, without the last one
// (none when nothing was).
func (s *Buffer) Lines() []string {
	out := strings.TrimSpace(s.String())
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}
