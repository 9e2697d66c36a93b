//go:build integration

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/poll"
	"github.com/flock-snmp/flock/internal/task"
)

// net-snmp's names for the protocols Flock calls SHA224, AES192C, ...
var (
	netsnmpAuth = map[string]string{"MD5": "MD5", "SHA": "SHA", "SHA224": "SHA-224", "SHA256": "SHA-256", "SHA384": "SHA-384", "SHA512": "SHA-512"}
	netsnmpPriv = map[string]string{"DES": "DES", "AES": "AES", "AES192": "AES-192", "AES256": "AES-256", "AES192C": "AES-192-C", "AES256C": "AES-256-C"}
)

const (
	authPass = "flock-auth-pass"
	privPass = "flock-priv-pass"
)

func v3user(auth, priv string) string { return "u_" + auth + "_" + priv }

func TestNetSNMPv3(t *testing.T) {
	var conf []string
	var creds []config.Credential
	for _, a := range config.AuthProtocols {
		for _, pr := range config.PrivProtocols {
			u := v3user(a, pr)
			conf = append(conf, fmt.Sprintf("createUser %s %s %s %s %s", u, netsnmpAuth[a], authPass, netsnmpPriv[pr], privPass), "rouser "+u+" priv")
			creds = append(creds, config.Credential{Name: u, Version: config.Version3, Username: u, SecurityLevel: config.AuthPriv,
				AuthProtocol: a, AuthPassphrase: authPass, PrivProtocol: pr, PrivPassphrase: privPass})
		}
	}
	conf = append(conf, "createUser authonly SHA-256 "+authPass, "rouser authonly auth", "createUser noauth", "rouser noauth noauth")
	creds = append(creds,
		config.Credential{Name: "authonly", Version: config.Version3, Username: "authonly", SecurityLevel: config.AuthNoPriv, AuthProtocol: "SHA256", AuthPassphrase: authPass},
		config.Credential{Name: "noauth", Version: config.Version3, Username: "noauth", SecurityLevel: config.NoAuthNoPriv},
		config.Credential{Name: "wrong-auth", Version: config.Version3, Username: v3user("SHA256", "AES"), SecurityLevel: config.AuthPriv,
			AuthProtocol: "SHA256", AuthPassphrase: "not-the-auth-pass", PrivProtocol: "AES", PrivPassphrase: privPass},
		config.Credential{Name: "wrong-priv", Version: config.Version3, Username: v3user("SHA256", "AES"), SecurityLevel: config.AuthPriv,
			AuthProtocol: "SHA256", AuthPassphrase: authPass, PrivProtocol: "AES", PrivPassphrase: "not-the-priv-pass"},
		config.Credential{Name: "unknown-user", Version: config.Version3, Username: "nobody", SecurityLevel: config.AuthNoPriv,
			AuthProtocol: "SHA", AuthPassphrase: authPass},
	)
	port := startSnmpd(t, conf...)
	p := poll.New("v3", creds, nil)
	pollWith := func(t *testing.T, cred string) task.HostRecord {
		t.Helper()
		now := time.Now()
		tk := task.PollTask{Schema: task.Schema, ID: "v3@1", Site: task.DefaultSite, Host: "snmpd", HostKey: "snmpd",
			Address: "127.0.0.1", Port: uint16(port), Credentials: cred, Get: []string{".1.3.6.1.2.1.1.5.0", ".1.3.6.1.2.1.1.2.0"},
			Walk: []string{".1.3.6.1.2.1.1.9"}, TimeoutMS: 1000, PollTimeoutMS: 10000, Retries: 0, MaxOids: 8, MaxRepetitions: 10,
			ScheduledAt: now, Deadline: now.Add(time.Minute)}
		var rec task.HostRecord
		if err := p.Poll(context.Background(), &tk, 1, &rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}

	ref, err := netsnmp(t, "snmpbulkwalk", port, "-v2c", ".1.3.6.1.2.1.1.9")
	if err != nil {
		t.Fatal(err)
	}
	for _, cr := range creds[:len(creds)-3] {
		t.Run(cr.Name, func(t *testing.T) {
			rec := pollWith(t, cr.Name)
			if rec.Error != nil {
				t.Fatalf("%s/%s/%s: %v", cr.SecurityLevel, cr.AuthProtocol, cr.PrivProtocol, rec.Error)
			}
			if len(rec.Varbinds) != 2+len(ref) || string(rec.Varbinds[0].Bytes) != "flock-interop.example.net" ||
				rec.Varbinds[1].Str != ".1.3.6.1.4.1.8072.3.2.10" {
				t.Fatalf("got %d varbinds (want %d), sysName %q, sysObjectID %q", len(rec.Varbinds), 2+len(ref), rec.Varbinds[0].Bytes, rec.Varbinds[1].Str)
			}
		})
	}
	for _, name := range []string{"wrong-auth", "wrong-priv", "unknown-user"} {
		t.Run(name, func(t *testing.T) {
			rec := pollWith(t, name)
			if rec.Error == nil || rec.Error.Kind != task.KindAuth {
				t.Fatalf("error = %+v, want kind auth (not a timeout)", rec.Error)
			}
			if strings.Contains(rec.Error.Message, "not-the-") || strings.Contains(rec.Error.Message, authPass) {
				t.Errorf("a passphrase leaked into the error: %s", rec.Error.Message)
			}
		})
	}

	// The engine cache: a poller that knows the agent sends no discovery
	// probe, which snmpd counts in usmStatsUnknownEngineIDs. Every snmpget
	// -v3 below discovers once itself.
	t.Run("engine cache skips discovery", func(t *testing.T) {
		probes := func() uint64 {
			vs, err := netsnmp(t, "snmpget", port, "-v3 -l authPriv -u "+v3user("SHA", "AES")+" -a SHA -A "+authPass+" -x AES -X "+privPass,
				".1.3.6.1.6.3.15.1.1.4.0")
			if err != nil || len(vs) != 1 {
				t.Fatalf("read usmStatsUnknownEngineIDs: %v %v", vs, err)
			}
			n, _ := strconv.ParseUint(vs[0].value, 10, 64)
			return n
		}
		cred := v3user("SHA512", "AES256C")
		if p.Engines().Len() == 0 {
			t.Fatal("the engine cache is empty after the polls above")
		}
		before := probes()
		if rec := pollWith(t, cred); rec.Error != nil {
			t.Fatal(rec.Error)
		}
		cached := probes() - before - 1 // minus the reading's own discovery
		fresh := poll.New("fresh", creds, nil)
		before = probes()
		now := time.Now()
		tk := task.PollTask{Schema: task.Schema, ID: "v3@2", Site: task.DefaultSite, Host: "snmpd", HostKey: "snmpd",
			Address: "127.0.0.1", Port: uint16(port), Credentials: cred, Get: []string{".1.3.6.1.2.1.1.5.0"},
			TimeoutMS: 1000, PollTimeoutMS: 10000, MaxOids: 8, MaxRepetitions: 10, ScheduledAt: now, Deadline: now.Add(time.Minute)}
		var rec task.HostRecord
		if err := fresh.Poll(context.Background(), &tk, 1, &rec); err != nil || rec.Error != nil {
			t.Fatal(err, rec.Error)
		}
		uncached := probes() - before - 1
		if cached != 0 || uncached != 1 {
			t.Fatalf("discovery probes: %d with a warm engine cache (want 0), %d with a cold one (want 1)", cached, uncached)
		}
	})
}

func TestNetSNMPv3Contexts(t *testing.T) {
	u := v3user("SHA256", "AES")
	port := startSnmpd(t, fmt.Sprintf("createUser %s SHA-256 %s AES %s", u, authPass, privPass), "rouser "+u+" priv")
	ids, err := netsnmp(t, "snmpget", port, "-v2c", ".1.3.6.1.6.3.10.2.1.1.0") // snmpEngineID
	if err != nil || len(ids) != 1 || ids[0].value == "" {
		t.Fatalf("read snmpd's engine id: %v %v", ids, err)
	}
	base := config.Credential{Version: config.Version3, Username: u, SecurityLevel: config.AuthPriv,
		AuthProtocol: "SHA256", AuthPassphrase: authPass, PrivProtocol: "AES", PrivPassphrase: privPass}
	withEngine, badContext := base, base
	withEngine.Name, withEngine.ContextEngineID = "with-engine", ids[0].value
	badContext.Name, badContext.ContextName = "bad-context", "no-such-context"
	p := poll.New("ctx", []config.Credential{withEngine, badContext}, nil)
	pollWith := func(cred string) task.HostRecord {
		now := time.Now()
		tk := task.PollTask{Schema: task.Schema, ID: "ctx@1", Site: task.DefaultSite, Host: "snmpd", HostKey: "snmpd",
			Address: "127.0.0.1", Port: uint16(port), Credentials: cred, Get: []string{".1.3.6.1.2.1.1.5.0"},
			TimeoutMS: 1000, PollTimeoutMS: 10000, MaxOids: 8, MaxRepetitions: 10, ScheduledAt: now, Deadline: now.Add(time.Minute)}
		var rec task.HostRecord
		if err := p.Poll(context.Background(), &tk, 1, &rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	if rec := pollWith("with-engine"); rec.Error != nil || len(rec.Varbinds) != 1 || string(rec.Varbinds[0].Bytes) != "flock-interop.example.net" {
		t.Fatalf("context engine id = snmpd's own: %+v", rec)
	}
	// snmpd drops requests for a context it does not serve (net-snmp's own
	// snmpget reports "Timeout: No Response"): Flock says timeout too, and its
	// privacy probe must not turn the silence into a false auth diagnosis.
	rec := pollWith("bad-context")
	if rec.Error == nil || rec.Error.Kind != task.KindTimeout || strings.Contains(rec.Error.Message, "privacy") {
		t.Fatalf("unknown context name: error %+v, want a plain timeout as net-snmp reports", rec.Error)
	}
}
