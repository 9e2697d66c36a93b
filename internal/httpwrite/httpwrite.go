// Package httpwrite sends one write request to a time-series database over
// HTTP, sorting its answer into written, refused for good, or worth
// retrying: the part the metric outputs' adapters (promwrite, influx)
// share. Messages show the URL with its secrets masked.
package httpwrite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Target is one write endpoint.
type Target struct {
	url   string
	shown string // url with its secrets masked, for messages
	http  *http.Client
}

// New is the endpoint url, shown in messages as shown, whose requests time
// out after timeout.
func New(url, shown string, timeout time.Duration) *Target {
	return &Target{url: url, shown: shown, http: &http.Client{Timeout: timeout}}
}

// Shown is the endpoint's URL as messages show it.
func (t *Target) Shown() string { return t.shown }

// Post sends body with header. what says what is written ("remote write of
// 12 series"), for messages. A 2xx answer is nil; a 4xx other than 429
// wraps rejected (final: sending it again would not help), with the
// server's status and answer; anything else (no connection, timeout, 5xx,
// 429) may pass if retried.
func (t *Target) Post(ctx context.Context, body []byte, header http.Header, what string, rejected error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s to %s: %w", what, t.shown, t.redact(err))
	}
	req.Header = header
	resp, err := t.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s to %s: %w", what, t.shown, t.redact(err))
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests:
		return fmt.Errorf("%s to %s: %w: %s: %s", what, t.shown, rejected, resp.Status, strings.TrimSpace(string(answer)))
	}
	return fmt.Errorf("%s to %s: %s: %s", what, t.shown, resp.Status, strings.TrimSpace(string(answer)))
}

// redact is err with the URL (which net/http errors quote) shown masked;
// errors.Is still sees what err wraps.
func (t *Target) redact(err error) error {
	if t.url == t.shown || !strings.Contains(err.Error(), t.url) {
		return err
	}
	return redacted{msg: strings.ReplaceAll(err.Error(), t.url, t.shown), err: err}
}

type redacted struct {
	msg string
	err error
}

func (r redacted) Error() string { return r.msg }
func (r redacted) Unwrap() error { return r.err }
