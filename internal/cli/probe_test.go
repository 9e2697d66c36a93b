package cli

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestProbe(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }))
	defer down.Close()
	ctx := context.Background()
	if handled, _ := Probe(ctx, []string{"--config", "x.yaml"}); handled {
		t.Fatal("a normal command line was taken for a probe")
	}
	if handled, err := Probe(ctx, []string{"--probe", ok.URL}); !handled || err != nil {
		t.Fatalf("probe of a 200: %v %v", handled, err)
	}
	if handled, err := Probe(ctx, []string{"-probe", down.URL}); !handled || err == nil {
		t.Fatalf("probe of a 503: %v %v", handled, err)
	}
	if _, err := Probe(ctx, []string{"--probe", ok.URL, "--config", "x.yaml"}); !errors.Is(err, ErrUsage) {
		t.Fatalf("probe with another flag: %v, want a usage error", err)
	}
}
