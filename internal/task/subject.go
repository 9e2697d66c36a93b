package task

import (
	"fmt"
	"strings"
)

// DefaultSite is the site of a host or poller that names none.
const DefaultSite = "default"

// maxSiteLen bounds a site name: it is part of subjects, consumer names
// (pollers-<site>) and NATS user names.
const maxSiteLen = 64

// CheckSite reports why site cannot name a site, or nil: a site is 1 to 64
// letters, digits, '-' and '_', so it is one subject token and a valid
// consumer and user name.
func CheckSite(site string) error {
	if site == "" {
		return fmt.Errorf("site name is empty")
	}
	if len(site) > maxSiteLen {
		return fmt.Errorf("site name %q is longer than %d characters", site, maxSiteLen)
	}
	for _, c := range site {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("site name %q has character %q; a site is letters, digits, '-' and '_' (it is a NATS subject token)", site, c)
		}
	}
	return nil
}

// Subject prefixes.
const (
	TaskPrefix   = "flock.tasks."
	ResultPrefix = "flock.results."
	// MetricsPrefix is where metrics_subject publishes each record's
	// samples as InfluxDB line protocol (core NATS, not stored).
	MetricsPrefix = "flock.metrics."
)

// MetricsSubject is the subject a host's samples are published on, as line
// protocol, when metrics_subject is set.
func MetricsSubject(site, hostKey string) string { return MetricsPrefix + site + "." + hostKey }

// TaskSubject is the work-queue subject of one host's tasks.
func TaskSubject(site, hostKey string) string { return TaskPrefix + site + "." + hostKey }

// ResultSubject is the subject a host's HostRecords are published on.
func ResultSubject(site, hostKey string) string { return ResultPrefix + site + "." + hostKey }

// PollerConsumer is the durable consumer on the task stream through which
// every poller of site takes that site's tasks: "pollers-<site>".
func PollerConsumer(site string) string { return pollerConsumerPrefix + site }

const pollerConsumerPrefix = "pollers-"

// ConsumerSite is the site of a poller consumer's name; ok is false for any
// other consumer.
func ConsumerSite(consumer string) (site string, ok bool) {
	return strings.CutPrefix(consumer, pollerConsumerPrefix)
}

// PollerInbox is the inbox prefix of site's pollers: each site has its own,
// since pulled tasks arrive on the puller's inbox, and a poller of one site
// must not read another site's tasks. The default site keeps the prefix of
// the single-site deployments, _INBOX_flock_poller (a token of its own, so
// its permission covers no other site's).
func PollerInbox(site string) string {
	if site == DefaultSite {
		return "_INBOX_flock_poller"
	}
	return "_INBOX_flock_poller_" + site
}

// ParseTaskSubject splits a task subject, flock.tasks.<site>.<hostkey>,
// into its site and host key; ok is false for any other subject.
func ParseTaskSubject(subject string) (site, hostKey string, ok bool) {
	rest, ok := strings.CutPrefix(subject, TaskPrefix)
	if !ok {
		return "", "", false
	}
	site, hostKey, ok = strings.Cut(rest, ".")
	if !ok || site == "" || hostKey == "" || strings.ContainsAny(hostKey, ".*>") || strings.ContainsAny(site, "*>") {
		return "", "", false
	}
	return site, hostKey, true
}

// HostKey maps a host name or address to a subject-safe token: lowercase
// letters, digits, '-' and '_'. '.', ':', '%', '/', '[' and ']' (of names,
// IP literals and agent forms such as udp6://[::1]:161) become '-'. Any
// other character is an error, since no host name or agent address has it.
func HostKey(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("host name is empty")
	}
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case c == '.', c == ':', c == '%', c == '/', c == '[', c == ']':
			// The punctuation of names, literals and agent forms
			// (udp6://[::1]:161, a bare host entry's name).
			b.WriteByte('-')
		default:
			return "", fmt.Errorf("host name %q has character %q, which is not allowed in a host name or address", name, c)
		}
	}
	return b.String(), nil
}
