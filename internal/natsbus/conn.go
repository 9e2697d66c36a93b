package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/task"
)

// Bus is a connection to NATS with JetStream.
type Bus struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger
	// replicas of the buckets this connection makes (EnsureStreams sets it).
	replicas int
	// acks matches asynchronous publications (records, tasks) with their
	// acknowledgements, set up on first use.
	acksOnce sync.Once
	acks     *pubAcks
	acksErr  error
}

// ConnectOptions configure Connect.
type ConnectOptions struct {
	URL  string
	Name string // connection name shown in NATS monitoring
	// Timeout bounds the wait for the first connection; 0 waits until ctx ends.
	Timeout time.Duration
	Log     *slog.Logger
	// InProcess, when set, connects through the embedded server without a socket.
	InProcess nats.InProcessConnProvider
	// Auth is how to authenticate, and TLS.
	Auth Auth
	// InboxPrefix replaces _INBOX for this connection's replies, so that a
	// role's permissions can let it read its own replies and no one else's
	// (PollerInbox, DispatcherInbox); empty keeps _INBOX.
	InboxPrefix string
}

// DispatcherInbox is the dispatcher's inbox prefix (config/nats-server.conf
// gives each role subscribe permission on its own).
const DispatcherInbox = "_INBOX_flock_dispatcher"

// PollerInbox is the inbox prefix of site's pollers (task.PollerInbox).
func PollerInbox(site string) string { return task.PollerInbox(site) }

// Auth says how to authenticate to NATS (at most one of user/password, an
// nkey seed file, a .creds file) and which TLS files to use.
type Auth struct {
	User, Password            string
	NKeySeedFile, CredsFile   string
	CAFile, CertFile, KeyFile string
}

// AuthFromConfig takes the nats.* authentication and TLS settings.
func AuthFromConfig(n *config.NATS) Auth {
	return Auth{User: n.User, Password: n.Password.Reveal(), NKeySeedFile: n.NKeySeedFile, CredsFile: n.CredsFile,
		CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile}
}

// who names the identity for error messages, never the secret.
func (a Auth) who() string {
	switch {
	case a.User != "":
		return fmt.Sprintf("user %q", a.User)
	case a.NKeySeedFile != "":
		return "the nkey in " + a.NKeySeedFile
	case a.CredsFile != "":
		return "the credentials in " + a.CredsFile
	}
	return "no credentials"
}

func (a Auth) options() ([]nats.Option, error) {
	var opts []nats.Option
	if a.User != "" {
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.NKeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_seed_file %s: %w", a.NKeySeedFile, err)
		}
		opts = append(opts, o)
	}
	if a.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	}
	if a.CAFile != "" {
		opts = append(opts, nats.RootCAs(a.CAFile))
	}
	if a.CertFile != "" {
		opts = append(opts, nats.ClientCert(a.CertFile, a.KeyFile))
	}
	return opts, nil
}

// publishAckTimeout bounds the wait for a stream's acknowledgement of a
// publication: when a cluster node dies with a publication in its stream's
// hands, no acknowledgement and no error may ever come, and a publisher
// waiting without a bound would stop for good. The caller retries; the
// message id makes a copy a no-op.
const publishAckTimeout = 2 * time.Second

// Connect connects to NATS, retrying with backoff until the server answers,
// and keeps reconnecting for the life of the connection.
func Connect(ctx context.Context, o ConnectOptions) (*Bus, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	connected := make(chan struct{}, 1)
	refused := make(chan error, 1) // the server said no: waiting will not help
	refuse := func(err error) {
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) ||
			strings.Contains(strings.ToLower(fmt.Sprint(err)), "authorization violation") ||
			strings.Contains(fmt.Sprint(err), "tls:") || strings.Contains(fmt.Sprint(err), "x509:") {
			select {
			case refused <- err:
			default:
			}
		}
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(func(*nats.Conn) { connected <- struct{}{} }),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { refuse(err) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("reconnected to NATS", "url", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			refuse(err)
			log.Error("NATS asynchronous error", "subject", subject, "err", err)
		}),
	}
	auth, err := o.Auth.options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, auth...)
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if o.InProcess != nil {
		opts = append(opts, nats.InProcessServer(o.InProcess))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s as %s: %w", redact(o.URL), o.Auth.who(), err)
	}
	if !nc.IsConnected() {
		if err := waitConnected(ctx, nc, connected, refused, o, log); err != nil {
			nc.Close()
			return nil, err
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("JetStream on %s: %w", redact(o.URL), err)
	}
	if o.InProcess != nil {
		log.Info("connected to NATS in-process")
	} else {
		log.Info("connected to NATS", "url", nc.ConnectedUrlRedacted())
	}
	return &Bus{nc: nc, js: js, log: log}, nil
}

func waitConnected(ctx context.Context, nc *nats.Conn, connected <-chan struct{}, refused <-chan error, o ConnectOptions, log *slog.Logger) error {
	var deadline <-chan time.Time
	if o.Timeout > 0 {
		t := time.NewTimer(o.Timeout)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	log.Warn("NATS is not reachable yet; retrying", "url", redact(o.URL))
	for {
		select {
		case <-connected:
			return nil
		case err := <-refused:
			return fmt.Errorf("connect to NATS at %s as %s: the server refused: %w (check nats.user/password, nkey_seed_file, creds_file and nats.tls)",
				redact(o.URL), o.Auth.who(), err)
		case <-tick.C:
			if nc.IsConnected() {
				return nil
			}
			log.Warn("still waiting for NATS", "url", redact(o.URL))
		case <-deadline:
			return fmt.Errorf("connect to NATS at %s: no answer within %s", redact(o.URL), o.Timeout)
		case <-ctx.Done():
			return fmt.Errorf("connect to NATS at %s: %w", redact(o.URL), ctx.Err())
		}
	}
}

func redact(url string) string { return config.RedactURL(url) }

// Conn exposes the underlying connection, for request-reply and tests.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// JetStream exposes the JetStream context, for tests and tools.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Close drains the connection: pending publishes are flushed and
// subscriptions finish before it closes.
func (b *Bus) Close() error {
	if b.nc.IsClosed() {
		return nil
	}
	if !b.nc.IsConnected() { // nothing to flush to: close at once
		b.nc.Close()
		return nil
	}
	closed := make(chan struct{})
	b.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := b.nc.Drain(); err != nil {
		b.nc.Close()
		return fmt.Errorf("drain NATS connection: %w", err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		b.nc.Close()
	}
	return nil
}

// Reconnects is how often the connection to NATS was re-established.
func (b *Bus) Reconnects() uint64 { return b.nc.Stats().Reconnects }

// Connected reports whether the connection to NATS is up.
func (b *Bus) Connected() bool { return b.nc.IsConnected() }

// Ready says why the bus cannot serve: not connected, or one of the named
// streams (default: both of Flock's) not reachable.
func (b *Bus) Ready(ctx context.Context, streams ...string) error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("not connected to NATS (%s)", b.nc.Status())
	}
	if len(streams) == 0 {
		streams = []string{TaskStream, ResultStream}
	}
	for _, name := range streams {
		if _, err := b.js.Stream(ctx, name); err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	return nil
}

// MaxPayload is the largest message the server takes.
func (b *Bus) MaxPayload() int { return int(b.nc.MaxPayload()) }
