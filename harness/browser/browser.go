// Package browser renders pages in a real headless Chromium for tests.
//
// Render starts a fresh Chromium for every call, with its own temporary
// profile under os.TempDir, and kills it (and removes the profile) before it
// returns. Only loopback URLs are rendered, and the browser is started with
// flags that stop it from contacting anything but the loopback interface.
//
// Chromium is required: on Debian, install it with
//
//	apt-get install -y chromium
package browser

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
)

// closeTimeout bounds the graceful close of the browser before it is killed.
const closeTimeout = 5 * time.Second

// binaries are the names of the Chromium executable, in the order Render
// looks them up in PATH.
var binaries = []string{"chromium", "chromium-browser"}

// errNotInstalled explains what to do when no Chromium is found.
var errNotInstalled = errors.New("browser: no Chromium found in PATH (looked for " +
	strings.Join(binaries, ", ") +
	"); install Debian's chromium package: apt-get install -y chromium")

// findChromium returns the path of the Chromium executable.
func findChromium() (string, error) {
	for _, name := range binaries {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errNotInstalled
}

// Available returns nil when a Chromium executable is found in PATH, and
// otherwise an error that says how to install it. Tests that need a browser
// should fail (not skip) on its error.
func Available() error {
	_, err := findChromium()
	return err
}

// checkLoopback returns an error unless raw is an http or https URL whose host
// is localhost, an address in 127.0.0.0/8, or ::1.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("browser: bad URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("browser: refusing URL %q: scheme must be http or https", raw)
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if addr, err := netip.ParseAddr(host); err == nil && addr.Zone() == "" && addr.Unmap().IsLoopback() {
		return nil
	}
	return fmt.Errorf("browser: refusing URL %q: host %q is not loopback (127.0.0.0/8, ::1 or localhost)", raw, host)
}

// allocatorOptions returns the flags Chromium is started with.
func allocatorOptions(execPath string) []chromedp.ExecAllocatorOption {
	opts := append([]chromedp.ExecAllocatorOption(nil), chromedp.DefaultExecAllocatorOptions[:]...)
	return append(opts,
		chromedp.ExecPath(execPath),
		// Root in a container: no sandbox, no GPU, a small /dev/shm.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 800),

		// No phoning home. DefaultExecAllocatorOptions already sets
		// no-first-run, no-default-browser-check,
		// disable-background-networking, disable-default-apps,
		// disable-extensions, disable-sync, metrics-recording-only,
		// disable-client-side-phishing-detection, disable-breakpad and
		// safebrowsing-disable-auto-update; they are repeated here so the
		// list does not depend on chromedp's defaults.
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("disable-features",
			"Translate,BlinkGenPropertyTrees,OptimizationHints,MediaRouter,"+
				"DialMediaRouteProvider,AutofillServerCommunication,"+
				"CertificateTransparencyComponentUpdater"),
		// Belt and braces: no host name but the loopback ones resolves
		// (the rules apply to IP literals too, hence the 127.* and
		// ::1 exclusions), and every request that is not to loopback
		// goes to a proxy that does not exist. Chromium always bypasses
		// the proxy for localhost, 127.0.0.0/8 and [::1].
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.*, EXCLUDE ::1"),
		chromedp.ProxyServer("http://127.0.0.1:9"),
		// No user-data-dir flag: chromedp then makes a fresh temporary
		// profile under os.TempDir for each browser, kills any leftover
		// child processes that use it, and removes it when the browser
		// stops.
	)
}

// Render starts a headless Chromium, navigates to url, waits until the body is
// ready, writes a full-page PNG screenshot to screenshotPath, and returns
// document.body.innerText, the rendered text of the page (text hidden with
// display:none is not in it).
//
// The url must be an http or https URL on a loopback host (127.0.0.0/8, ::1
// or localhost); any other URL is refused before a browser starts. An HTTP
// error status (400 or above) for the page is an error.
//
// The browser is killed and its temporary profile removed before Render
// returns. ctx bounds the whole call, browser start-up included; Render sets
// no timeout of its own, except a short limit on the graceful close.
func Render(ctx context.Context, url, screenshotPath string) (text string, err error) {
	if err := checkLoopback(url); err != nil {
		return "", err
	}
	if screenshotPath == "" {
		return "", errors.New("browser: empty screenshot path")
	}
	execPath, err := findChromium()
	if err != nil {
		return "", err
	}

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, allocatorOptions(execPath)...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	// Canceling the browser context kills the browser process, and waits
	// until it is gone and its profile directory is removed.
	defer cancelBrowser()
	// Before that, close the browser gracefully, so that Chromium stops
	// and reaps its own child processes instead of leaving them to be
	// killed one by one. If that takes too long, cancelBrowser kills it.
	defer func() {
		cctx, ccancel := context.WithTimeout(bctx, closeTimeout)
		defer ccancel()
		_ = chromedp.Cancel(cctx)
	}()

	resp, err := chromedp.Run(bctx, chromedp.NavigateResponse(url))
	if err != nil {
		return "", fmt.Errorf("browser: navigate to %s: %w", url, err)
	}
	if resp != nil && resp.Status >= 400 {
		return "", fmt.Errorf("browser: %s: HTTP %d %s", url, resp.Status, resp.StatusText)
	}
	if err := chromedp.Do(bctx, chromedp.WaitReady(chromedp.CSS("body"))); err != nil {
		return "", fmt.Errorf("browser: wait for body of %s: %w", url, err)
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // quality 100 means PNG
	if err != nil {
		return "", fmt.Errorf("browser: screenshot of %s: %w", url, err)
	}
	if err := os.WriteFile(screenshotPath, png, 0o644); err != nil {
		return "", fmt.Errorf("browser: %w", err)
	}
	text, err = chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		return "", fmt.Errorf("browser: read innerText of %s: %w", url, err)
	}
	return text, nil
}
