// Package natsauth writes the nats-server authorization block for Flock's roles, one poller user per site.
//
// The block is pure text for a nats-server configuration file (the shipped
// config/nats-server.conf holds the one for sites "default" and "branch-7"):
// the dispatcher, one poller user per site, allowed only its own site's
// consumer, results, poll-now tasks and inbox, and the reader. Passwords are
// nats-server variables, resolved from the environment when the server
// starts, so the block holds no secret.
package natsauth

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/flock-snmp/flock/internal/task"
)

// DefaultSite is the site whose pollers keep the user name and password
// variable of deployments that had a single site.
const DefaultSite = task.DefaultSite

// HubDomain is the JetStream domain of the hub's servers
// (config/nats-cluster.conf): a leaf node without JetStream of its own
// (config/nats-leaf.conf) reaches the hub's streams under it, as
// $JS.hub.API.>, since a leaf connection never carries $JS.API.> itself.
const HubDomain = "hub"

// PollerUser is the NATS user of site's pollers: "poller" for the default
// site, "poller-<site>" for any other.
func PollerUser(site string) string {
	if site == DefaultSite {
		return "poller"
	}
	return "poller-" + site
}

// PollerPasswordVar is the environment variable (without the $) that holds
// the password of site's pollers: FLOCK_POLLER_PASSWORD for the default
// site, FLOCK_POLLER_<SITE>_PASSWORD for any other, the site upper-cased
// and each '-' replaced by '_' (branch-7: FLOCK_POLLER_BRANCH_7_PASSWORD).
func PollerPasswordVar(site string) string {
	if site == DefaultSite {
		return "FLOCK_POLLER_PASSWORD"
	}
	return "FLOCK_POLLER_" + strings.ReplaceAll(strings.ToUpper(site), "-", "_") + "_PASSWORD"
}

// PollerInbox is the inbox prefix of site's pollers (task.PollerInbox).
func PollerInbox(site string) string { return task.PollerInbox(site) }

// PollerConsumer is the durable consumer on FLOCK_TASKS that site's pollers
// pull from (task.PollerConsumer).
func PollerConsumer(site string) string { return task.PollerConsumer(site) }

// Check reports the first site that is not a valid site name, appears twice,
// or has the password variable of an earlier one.
func Check(sites []string) error {
	seen := make(map[string]bool, len(sites))
	vars := make(map[string]string, len(sites))
	for _, s := range sites {
		if err := task.CheckSite(s); err != nil { // the one rule for site names
			return fmt.Errorf("site %q: %w", s, err)
		}
		if seen[s] {
			return fmt.Errorf("site %q is listed twice", s)
		}
		seen[s] = true
		v := PollerPasswordVar(s)
		if other, ok := vars[v]; ok {
			return fmt.Errorf("sites %q and %q would share the password variable $%s: rename one", other, s, v)
		}
		vars[v] = s
	}
	return nil
}

// Write writes the authorization block of a nats-server configuration: the
// dispatcher, one poller user per site in the order given, and the reader.
// It writes nothing when a site is invalid (see Check).
func Write(w io.Writer, sites []string) error {
	if err := Check(sites); err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	bw.WriteString(head)
	bw.WriteString(dispatcher)
	for _, s := range sites {
		writePoller(bw, s)
	}
	bw.WriteString(reader)
	bw.WriteString(tail)
	return bw.Flush()
}

func writePoller(w *bufio.Writer, site string) {
	c := PollerConsumer(site)
	fmt.Fprintf(w, `    {
      # Site %[1]s: binds to its site's consumer %[2]s, fetches and acks
      # its tasks, publishes its site's records, heartbeats and what devices
      # taught it; answers its site's poll-now tasks. It cannot publish a
      # task, create or delete a consumer or a stream, take another site's
      # tasks, publish another site's records, or read records, host state
      # or another site's or role's inbox.
      user: %[3]s
      password: $%[4]s
      # Its site's pollers, or its site's leaf node (nats-leaf.conf).
      allowed_connection_types: ["STANDARD", "LEAFNODE"]
      permissions: {
        publish: {
          allow: [
            "$JS.API.STREAM.INFO.FLOCK_TASKS",
            "$JS.API.STREAM.INFO.FLOCK_RESULTS",
            "$JS.API.CONSUMER.INFO.FLOCK_TASKS.%[2]s",
            "$JS.API.CONSUMER.MSG.NEXT.FLOCK_TASKS.%[2]s",
            "$JS.ACK.FLOCK_TASKS.%[2]s.>",
            "flock.results.%[1]s.>",
            "flock.pollers.*",
            "$JS.API.STREAM.INFO.KV_flock_devices",
            "$JS.API.CONSUMER.CREATE.KV_flock_devices.>",
            "$JS.API.CONSUMER.DELETE.KV_flock_devices.>",
            "$JS.API.DIRECT.GET.KV_flock_devices.>",
            "$JS.API.STREAM.MSG.GET.KV_flock_devices",
            "$JS.FC.KV_flock_devices.>",
            "$KV.flock_devices.>",
            # The same through a leaf node of the hub (config/nats-leaf.conf
            # logs in as this user): JetStream requests under the hub's
            # JetStream domain %[6]s.
            "$JS.%[6]s.API.STREAM.INFO.FLOCK_TASKS",
            "$JS.%[6]s.API.STREAM.INFO.FLOCK_RESULTS",
            "$JS.%[6]s.API.CONSUMER.INFO.FLOCK_TASKS.%[2]s",
            "$JS.%[6]s.API.CONSUMER.MSG.NEXT.FLOCK_TASKS.%[2]s",
            "$JS.%[6]s.API.STREAM.INFO.KV_flock_devices",
            "$JS.%[6]s.API.CONSUMER.CREATE.KV_flock_devices.>",
            "$JS.%[6]s.API.CONSUMER.DELETE.KV_flock_devices.>",
            "$JS.%[6]s.API.DIRECT.GET.KV_flock_devices.>",
            "$JS.%[6]s.API.STREAM.MSG.GET.KV_flock_devices",
            "$JS.%[6]s.API.$KV.flock_devices.>",
          ]
        }
        subscribe: {
          allow: [
            "%[5]s.>",
            "flock.poll.task.%[1]s",
          ]
        }
        allow_responses: true
      }
    },
`, site, c, PollerUser(site), PollerPasswordVar(site), PollerInbox(site), HubDomain)
}

const head = `authorization {
  users: [
`

const dispatcher = `    {
      # Administers the streams, the consumers and the KV buckets; publishes
      # tasks; reads records and heartbeats; serves poll-now; holds the
      # dispatchers' lease (flock_dispatchers); publishes samples on
      # flock.metrics.> (metrics_subject).
      user: dispatcher
      password: $FLOCK_DISPATCHER_PASSWORD
      # A client (or the dispatcher's embedded server's own), never a leaf.
      allowed_connection_types: ["STANDARD", "IN_PROCESS"]
      permissions: {
        publish: {
          allow: [
            "$JS.API.>",
            "$JS.ACK.FLOCK_RESULTS.>",
            "$JS.FC.>",
            "flock.tasks.>",
            "flock.results.>",
            "flock.poll.task.>",
            "flock.poll.now",
            "flock.metrics.>",
            "$KV.flock_hosts.>",
            "$KV.flock_dispatchers.>",
          ]
        }
        subscribe: {
          allow: [
            "_INBOX_flock_dispatcher.>",
            "flock.poll.now",
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.FLOCK_TASKS.>",
            "flock.pollers.>",
          ]
        }
        allow_responses: true
      }
    },
`

const reader = `    {
      # Reads records: live (nats sub 'flock.results.>') or through its own
      # consumers on FLOCK_RESULTS (the results command's metric sinks:
      # sink-<name>); publishes and reads samples on flock.metrics.>
      # (metrics_subject; Telegraf's nats_consumer). Nothing else.
      user: reader
      password: $FLOCK_READER_PASSWORD
      allowed_connection_types: ["STANDARD"]
      permissions: {
        publish: {
          allow: [
            "$JS.API.STREAM.INFO.FLOCK_RESULTS",
            "$JS.API.CONSUMER.CREATE.FLOCK_RESULTS",
            "$JS.API.CONSUMER.CREATE.FLOCK_RESULTS.>",
            "$JS.API.CONSUMER.DURABLE.CREATE.FLOCK_RESULTS.>",
            "$JS.API.CONSUMER.INFO.FLOCK_RESULTS.>",
            "$JS.API.CONSUMER.DELETE.FLOCK_RESULTS.>",
            "$JS.API.CONSUMER.MSG.NEXT.FLOCK_RESULTS.>",
            "$JS.API.CONSUMER.UNPIN.FLOCK_RESULTS.>",
            "$JS.ACK.FLOCK_RESULTS.>",
            "$JS.FC.FLOCK_RESULTS.>",
            "flock.metrics.>",
          ]
        }
        subscribe: {
          allow: [
            "_INBOX.>",
            "flock.results.>",
            "flock.metrics.>",
          ]
        }
      }
    },
`

const tail = `  ]
}
`
