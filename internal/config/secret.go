package config

import (
	"log/slog"
	"strings"
)

// Secret is a string that never shows itself: not in logs, errors, JSON,
// YAML or %v output. Read the value with Reveal, at the one place that needs it.
type Secret string

const redacted = "<secret>"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer, for %#v.
func (s Secret) GoString() string { return `config.Secret("` + s.String() + `")` }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText implements encoding.TextMarshaler, used by JSON and YAML encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// RedactURL hides the password or token of a URL such as nats://user:pass@host:4222
// (each URL of a comma-separated list).
func RedactURL(url string) string {
	parts := strings.Split(url, ",")
	for i, u := range parts {
		at := strings.LastIndex(u, "@")
		scheme := strings.Index(u, "://")
		if at < 0 || scheme < 0 || at < scheme {
			continue
		}
		if c := strings.Index(u[scheme+3:at], ":"); c >= 0 {
			parts[i] = u[:scheme+3+c+1] + redacted + u[at:] // user:password
		} else {
			parts[i] = u[:scheme+3] + redacted + u[at:] // a bare token
		}
	}
	return strings.Join(parts, ",")
}
