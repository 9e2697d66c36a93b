package natsbus

import (
	"cmp"
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
	// ConfigFile is a nats-server configuration (users, permissions, TLS;
	// config/nats-server.conf) to start from; Listen and StoreDir still win.
	ConfigFile string
}

// isLoopback reports whether host only reaches this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func hasAuth(o *server.Options) bool {
	return len(o.Users) > 0 || len(o.Nkeys) > 0 || o.Username != "" || o.Authorization != "" ||
		len(o.TrustedOperators) > 0 || len(o.TrustedKeys) > 0 || o.TLSMap || o.AuthCallout != nil
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
	opts := &server.Options{MaxPayload: 8 << 20}
	if o.ConfigFile != "" {
		if opts, err = server.ProcessConfigFile(o.ConfigFile); err != nil {
			return nil, fmt.Errorf("nats.embedded.config_file %s: %w", o.ConfigFile, err)
		}
		if opts.MaxPayload == 0 {
			opts.MaxPayload = 8 << 20
		}
	}
	opts.ServerName = "flock-embedded"
	opts.JetStream, opts.StoreDir = true, abs
	opts.JetStreamMaxMemory = cmp.Or(opts.JetStreamMaxMemory, 256<<20)
	opts.JetStreamMaxStore = cmp.Or(opts.JetStreamMaxStore, 8<<30)
	opts.NoSigs = true                   // otherwise SIGINT/SIGTERM would os.Exit inside the server
	opts.HTTPPort, opts.HTTPSPort = 0, 0 // a config file's monitoring port is the standalone server's
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
		if !isLoopback(host) && !hasAuth(opts) {
			return nil, fmt.Errorf("embedded NATS: refusing to listen on %s, beyond this machine, without authentication: "+
				"set nats.embedded.config_file to a nats-server configuration with users (config/nats-server.conf), "+
				"or listen on 127.0.0.1", o.Listen)
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
