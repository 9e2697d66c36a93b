package natsbus

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configure an in-process nats-server.
type EmbeddedOptions struct {
	// Listen is host:port for clients; port 0 picks a free one. Empty: no
	// listener at all (in-process connections only).
	Listen   string
	StoreDir string // JetStream file storage
	Log      *slog.Logger
	// MaxPayload is the largest message the server takes; default 8 MiB.
	MaxPayload int32
}

// Embedded is a nats-server running inside this process.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts a JetStream-enabled nats-server in this process. It
// never installs signal handlers: the process's own shutdown stops it.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	if err := os.MkdirAll(o.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded NATS store %s: %w", o.StoreDir, err)
	}
	abs, err := filepath.Abs(o.StoreDir)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS store %s: %w", o.StoreDir, err)
	}
	opts := &server.Options{
		ServerName:         "flock-embedded",
		JetStream:          true,
		StoreDir:           abs,
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  8 << 30,
		NoSigs:             true, // otherwise SIGINT/SIGTERM would os.Exit inside the server
		MaxPayload:         8 << 20,
	}
	if o.MaxPayload > 0 {
		opts.MaxPayload = o.MaxPayload
	}
	if o.Listen == "" {
		opts.DontListen = true
	} else {
		host, portStr, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS listen %q: %w", o.Listen, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS listen %q: bad port: %w", o.Listen, err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	if o.Log != nil {
		srv.SetLoggerV2(serverLogger{o.Log.With("component", "nats-server")}, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded NATS did not start listening on %s within 15s (port in use?)", o.Listen)
	}
	return &Embedded{srv: srv}, nil
}

// Server is the nats-server, for in-process connections.
func (e *Embedded) Server() *server.Server { return e.srv }

// ClientURL is the URL other processes connect to.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Close shuts the server down and waits for it.
func (e *Embedded) Close() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// serverLogger routes nats-server's log into slog.
type serverLogger struct{ log *slog.Logger }

// Noticef is debug: the server's startup banner would drown the dispatcher's
// own log, which reports the one line that matters (where it listens).
func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
