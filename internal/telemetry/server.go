// Package telemetry is what both binaries show operators over HTTP: the
// Prometheus /metrics, /healthz (the process is alive) and /readyz (it can
// do its job: connected to NATS, streams reachable), plus the poller's
// metric set. Each binary passes its own registry; nothing is global.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// ServerOptions configure Serve.
type ServerOptions struct {
	// Registry is served on /metrics.
	Registry *prometheus.Registry
	// Ready reports why the process cannot do its job, or nil; it is asked
	// on each /readyz request with a context bounded to a few seconds.
	Ready func(ctx context.Context) error
	// Role, if set, is said on /readyz when ready ("ready: role standby").
	Role func() string
	// Handlers are more paths to serve (the dispatcher's status page).
	Handlers map[string]http.Handler
	Log      *slog.Logger
}

// Server is a running telemetry endpoint.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Serve listens on addr (host:port; key is the config key, for the error)
// and serves until Close.
func Serve(key, addr string, o ServerOptions) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", key, addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{Registry: o.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if o.Ready != nil {
			if err := o.Ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		if o.Role != nil {
			_, _ = fmt.Fprintf(w, "ready: role %s\n", o.Role())
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	for path, h := range o.Handlers {
		mux.Handle(path, h)
	}
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("telemetry endpoint stopped", "addr", addr, "err", err)
		}
	}()
	log.Info("serving metrics and health", "metrics", "http://"+ln.Addr().String()+"/metrics",
		"healthz", "/healthz", "readyz", "/readyz")
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, letting requests in progress finish for a moment.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// Probe asks url (a /healthz or /readyz) and returns nil on 200: the
// binaries' --probe flag, for container health checks in images that have
// no shell or curl.
func Probe(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b [512]byte
		n, _ := resp.Body.Read(b[:])
		return fmt.Errorf("probe %s: %s: %s", url, resp.Status, b[:n])
	}
	return nil
}
