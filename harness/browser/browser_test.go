package browser

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const testPage = `<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>browser harness test</title></head>
<body>
<h1>Static heading</h1>
<div id="js-target"></div>
<div id="hidden" style="display:none">HIDDEN-SENTINEL-TEXT</div>
<table id="tbl">
  <tr><th>Device</th><th>Polls</th></tr>
  <tr><td>router-alpha</td><td>4242</td></tr>
  <tr><td>switch-beta</td><td>1717</td></tr>
</table>
<script>
  // Built at load time, so only a real renderer shows this text.
  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("js-target").textContent =
      ["JS", "RENDERED", String(6 * 7)].join("-");
  });
</script>
</body>
</html>
`

func TestRender(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}

	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(testPage))
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	shot := filepath.Join(t.TempDir(), "page.png")
	text, err := Render(ctx, srv.URL+"/", shot)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rendered text:\n%s", text)

	if strings.Contains(testPage, "JS-RENDERED-42") {
		t.Fatal("test page must not contain the JS-built text literally")
	}
	for _, want := range []string{"Static heading", "JS-RENDERED-42", "Device", "Polls", "router-alpha", "4242", "switch-beta", "1717"} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered text lacks %q", want)
		}
	}
	if strings.Contains(text, "HIDDEN-SENTINEL-TEXT") {
		t.Error("rendered text contains the display:none element's text")
	}
	if hits.Load() == 0 {
		t.Error("the test server saw no request")
	}

	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	if sig := []byte("\x89PNG\r\n\x1a\n"); !bytes.HasPrefix(png, sig) {
		t.Errorf("screenshot does not start with the PNG signature: % x", png[:min(len(png), 8)])
	}
	if len(png) < 2000 {
		t.Errorf("screenshot is only %d bytes", len(png))
	}
	t.Logf("screenshot: %d bytes", len(png))
}

func TestRenderHTTPError(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.NotFoundHandler()) // listens on 127.0.0.1
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_, err := Render(ctx, srv.URL+"/missing", filepath.Join(t.TempDir(), "x.png"))
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("Render of a 404 page: err = %v, want an HTTP 404 error", err)
	}
}

// TestRenderLoopbackHosts checks that the no-network flags still let every
// kind of loopback host through.
func TestRenderLoopbackHosts(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ listen, host string }{
		{"127.0.0.2:0", "127.0.0.2"},
		{"[::1]:0", "[::1]"},
		{"127.0.0.1:0", "localhost"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			ln, err := net.Listen("tcp", tc.listen)
			if err != nil {
				t.Fatalf("listen on %s: %v", tc.listen, err)
			}
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				_, _ = w.Write([]byte(`<body><script>document.body.append("host-ok")</script></body>`))
			}))
			srv.Listener = ln
			srv.Start()
			defer srv.Close()
			_, port, _ := net.SplitHostPort(ln.Addr().String())

			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			u := "http://" + net.JoinHostPort(strings.Trim(tc.host, "[]"), port) + "/"
			text, err := Render(ctx, u, filepath.Join(t.TempDir(), "p.png"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text, "host-ok") {
				t.Errorf("Render(%s) text = %q, want host-ok", u, text)
			}
		})
	}
}

func TestRenderRefusesNonLoopback(t *testing.T) {
	// These are refused before a browser starts, so there is no network
	// traffic: the screenshot file must not appear, and Render must return
	// at once.
	for _, u := range []string{
		"http://example.net/",
		"https://8.8.8.8/",
		"http://[2001:db8::1]/",
		"http://localhost.example.net/",
		"http://127.0.0.1.nip.io/",
		"http://0.0.0.0/",
		"http://10.0.0.1:8080/",
		"file:///etc/passwd",
		"data:text/html,hi",
		"about:blank",
		"127.0.0.1:8080",
		"http://[fe80::1%25lo]/",
	} {
		shot := filepath.Join(t.TempDir(), "refused.png")
		start := time.Now()
		_, err := Render(context.Background(), u, shot)
		if err == nil {
			t.Errorf("Render(%q) = nil error, want refusal", u)
			continue
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Render(%q) took %v to refuse; it must not start a browser", u, d)
		}
		if _, statErr := os.Stat(shot); !os.IsNotExist(statErr) {
			t.Errorf("Render(%q) wrote a screenshot", u)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, u := range []string{
		"http://127.0.0.1/",
		"http://127.0.0.1:8080/x?y=1",
		"http://127.1.2.3:1/",
		"http://[::1]:9000/",
		"https://localhost/",
		"http://LOCALHOST:80/",
		"http://[::ffff:127.0.0.1]/",
	} {
		if err := checkLoopback(u); err != nil {
			t.Errorf("checkLoopback(%q) = %v, want nil", u, err)
		}
	}
}

func TestAvailableMessage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := Available()
	if err == nil {
		t.Fatal("Available() = nil with an empty PATH")
	}
	if !strings.Contains(err.Error(), "apt-get install -y chromium") {
		t.Errorf("Available() error does not say how to install: %v", err)
	}
	if _, err := Render(context.Background(), "http://127.0.0.1:1/", filepath.Join(t.TempDir(), "x.png")); err == nil {
		t.Error("Render without Chromium = nil error")
	}
}
