package promwrite

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/flock-snmp/flock/harness/procs"
	"github.com/flock-snmp/flock/harness/promtest"
	"github.com/flock-snmp/flock/harness/recordtest"
	"github.com/flock-snmp/flock/internal/mib"
	"github.com/flock-snmp/flock/internal/sample"
	"github.com/flock-snmp/flock/internal/snmpsim"
	"github.com/flock-snmp/flock/internal/task"
)

// A record polled from the simulator, converted and written to a real
// Prometheus: its API answers with the varbinds' values under the MIB's
// names and labels.
func TestWriteToPrometheus(t *testing.T) {
	prom := promtest.Start(t)
	rec := recordtest.Router(t, 3)
	conv, err := sample.NewConverter(mib.Builtin(), []string{"ifName", "ifDescr", "ifAlias"})
	if err != nil {
		t.Fatal(err)
	}
	var req Request
	samples := conv.Convert(&rec, nil)
	req.AddRecord(&rec, samples)
	if req.Len() != len(samples) {
		t.Fatalf("%d series from %d samples", req.Len(), len(samples))
	}
	c, err := New(prom.WriteURL(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Send(ctx, &req); err != nil {
		t.Fatal(err)
	}
	at := rec.StartedAt.Add(time.Second)
	one := func(query string) promtest.Result {
		t.Helper()
		rs, err := prom.Query(ctx, query, at)
		if err != nil || len(rs) != 1 {
			t.Fatalf("%s: %v, %v; want one series", query, rs, err)
		}
		return rs[0]
	}
	host := rec.Host
	var uptime, hc2 uint64
	var name2 string
	for _, vb := range rec.Varbinds {
		switch vb.OID {
		case snmpsim.OIDSysUpTime:
			uptime = vb.Uint
		case ".1.3.6.1.2.1.31.1.1.1.6.2":
			hc2 = vb.Uint
		case ".1.3.6.1.2.1.31.1.1.1.1.2":
			name2 = string(vb.Bytes)
		}
	}
	if r := one(fmt.Sprintf(`sysUpTime{host=%q}`, host)); r.Value != float64(uptime) || r.Labels["site"] != task.DefaultSite {
		t.Errorf("sysUpTime: %+v; the agent said %d", r, uptime)
	}
	r := one(fmt.Sprintf(`ifHCInOctets{host=%q,ifName=%q}`, host, name2))
	if r.Value != float64(hc2) || r.Labels["ifIndex"] != "2" || r.Labels["ifDescr"] == "" {
		t.Errorf("ifHCInOctets of %s: %+v; the agent said %d", name2, r, hc2)
	}
	if r := one(fmt.Sprintf(`flock_poll_up{host=%q}`, host)); r.Value != 1 {
		t.Errorf("flock_poll_up: %+v", r)
	}
	if rs, err := prom.Query(ctx, fmt.Sprintf(`count({host=%q})`, host), at); err != nil || len(rs) != 1 || int(rs[0].Value) != len(samples) {
		t.Errorf("series of %s in Prometheus: %v %v; want %d", host, rs, err, len(samples))
	}

	// What the server refuses is final, and says why; no server is not.
	bad := Request{buf: []byte("not a WriteRequest"), n: 1}
	if err := c.Send(ctx, &bad); !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "400") {
		t.Errorf("garbage: %v; want a rejection with the server's answer", err)
	}
	port, _ := procs.FreePort()
	down, _ := New(fmt.Sprintf("http://127.0.0.1:%d/api/v1/write", port), time.Second)
	if err := down.Send(ctx, &req); err == nil || errors.Is(err, ErrRejected) {
		t.Errorf("no server: %v; want a retryable error", err)
	}
	for _, u := range []string{"prometheus:9090/api/v1/write", "ftp://x/y", "http:///api/v1/write"} {
		if _, err := New(u, time.Second); err == nil || !strings.Contains(err.Error(), u) {
			t.Errorf("New(%q): %v; want an error naming the URL", u, err)
		}
	}
}

// Encoding a 48-interface router's samples: series per second, allocations.
func BenchmarkAddRecord(b *testing.B) {
	rec := recordtest.Router(b, 48)
	conv, _ := sample.NewConverter(mib.Builtin(), []string{"ifName", "ifDescr", "ifAlias"})
	samples := conv.Convert(&rec, nil)
	var req Request
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		req.Reset()
		req.AddRecord(&rec, samples)
	}
	b.ReportMetric(float64(b.N*len(samples))/b.Elapsed().Seconds(), "series/s")
}

// A password in the endpoint's URL never shows in an error.
func TestErrorsHideThePassword(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the connection is refused
	c, err := New("http://flock:hunter22@"+addr+"/api/v1/write", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r Request
	err = c.Send(context.Background(), &r)
	if err == nil || strings.Contains(err.Error(), "hunter22") || !strings.Contains(err.Error(), addr) {
		t.Fatalf("error %v: want the address, not the password", err)
	}
}
