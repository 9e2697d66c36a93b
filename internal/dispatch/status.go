package dispatch

import (
	"cmp"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/task"
)

// Host states in the status view and the flock_dispatcher_hosts metric.
const (
	StateOK      = "ok"      // the last poll answered
	StateFailing = "failing" // the last poll failed
	StateUnknown = "unknown" // no record yet
)

// StateCount is how many hosts are in a state.
type StateCount struct {
	State string
	N     int
}

// CountStates counts rows by state: ok, failing, unknown, in that order.
func CountStates(rows []StatusRow) []StateCount {
	counts := []StateCount{{StateOK, 0}, {StateFailing, 0}, {StateUnknown, 0}}
	for _, r := range rows {
		for i := range counts {
			if counts[i].State == r.State {
				counts[i].N++
			}
		}
	}
	return counts
}

// StatusRow is one host in the status view.
type StatusRow struct {
	Host                string
	State               string
	LastSuccessAt       time.Time
	LastPollAt          time.Time
	LastDurationMS      float64
	LastError           *task.Error
	ConsecutiveFailures int
}

// BuildStatus lists the inventory's hosts with what states says of them,
// keyed by <site>.<hostkey>. A host without a state is unknown.
func BuildStatus(site string, hosts []config.Host, states map[string]HostState) []StatusRow {
	rows := make([]StatusRow, 0, len(hosts))
	for i := range hosts {
		h := &hosts[i]
		row := StatusRow{Host: h.Name, State: StateUnknown}
		if hs, ok := states[task.HostStateKey(site, h.Key)]; ok && !hs.LastPollAt.IsZero() {
			row.State = StateOK
			if hs.ConsecutiveFailures > 0 {
				row.State = StateFailing
			}
			row.LastSuccessAt, row.LastPollAt, row.LastDurationMS = hs.LastSuccessAt, hs.LastPollAt, hs.LastDurationMS
			row.LastError, row.ConsecutiveFailures = hs.LastError, hs.ConsecutiveFailures
		}
		rows = append(rows, row)
	}
	return rows
}

// SortKeys are the orders the status view offers.
var SortKeys = []string{"duration", "name", "state", "last_success", "failures"}

// SortStatus orders rows by key: duration (slowest first), name, state
// (failing first), last_success (longest ago first) or failures (most first).
func SortStatus(rows []StatusRow, key string) error {
	var cmpFn func(a, b StatusRow) int
	switch key {
	case "duration":
		cmpFn = func(a, b StatusRow) int { return cmp.Compare(b.LastDurationMS, a.LastDurationMS) }
	case "name":
		cmpFn = func(a, b StatusRow) int { return 0 }
	case "state":
		rank := map[string]int{StateFailing: 0, StateUnknown: 1, StateOK: 2}
		cmpFn = func(a, b StatusRow) int { return cmp.Compare(rank[a.State], rank[b.State]) }
	case "last_success":
		cmpFn = func(a, b StatusRow) int { return a.LastSuccessAt.Compare(b.LastSuccessAt) }
	case "failures":
		cmpFn = func(a, b StatusRow) int { return cmp.Compare(b.ConsecutiveFailures, a.ConsecutiveFailures) }
	default:
		return fmt.Errorf("sort key %q: want one of %s", key, strings.Join(SortKeys, ", "))
	}
	slices.SortStableFunc(rows, func(a, b StatusRow) int {
		return cmp.Or(cmpFn(a, b), strings.Compare(a.Host, b.Host))
	})
	return nil
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func errText(e *task.Error) string {
	if e == nil {
		return "-"
	}
	return e.Kind + ": " + e.Message
}

// WriteStatusText writes rows as an aligned table, one host per line.
func WriteStatusText(w io.Writer, rows []StatusRow, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tLAST DURATION\tLAST SUCCESS\tFAILURES\tLAST ERROR")
	for _, r := range rows {
		dur := "-"
		if !r.LastPollAt.IsZero() {
			dur = fmt.Sprintf("%.1fms", r.LastDurationMS)
		}
		msg := "-"
		if r.State == StateFailing {
			msg = errText(r.LastError)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", r.Host, r.State, dur, ago(r.LastSuccessAt, now), r.ConsecutiveFailures, msg)
	}
	return tw.Flush()
}

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": ago, "err": errText, "ms": func(f float64) string { return fmt.Sprintf("%.1f", f) },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Flock status</title>
<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}
.failing{color:#b00}.unknown{color:#777}</style></head><body>
<h1>Flock: {{len .Rows}} hosts</h1>
<p>{{range .Counts}}{{.State}}: {{.N}} &nbsp; {{end}}(as of {{.Now.Format "2006-01-02 15:04:05Z07:00"}})</p>
<table><tr>
<th><a href="?sort=name">host</a></th><th><a href="?sort=state">state</a></th><th><a href="?sort=duration">last duration (ms)</a></th>
<th><a href="?sort=last_success">last success</a></th><th><a href="?sort=failures">failures</a></th><th>last error</th></tr>
{{range .Rows}}<tr class="{{.State}}"><td>{{.Host}}</td><td>{{.State}}</td><td>{{if not .LastPollAt.IsZero}}{{ms .LastDurationMS}}{{end}}</td>
<td>{{ago .LastSuccessAt $.Now}}</td><td>{{.ConsecutiveFailures}}</td><td>{{if eq .State "failing"}}{{err .LastError}}{{end}}</td></tr>
{{end}}</table></body></html>
`))

// StatusHandler serves the status view as HTML (?sort=duration|name|...);
// rows is called per request.
func StatusHandler(rows func() []StatusRow) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		key := cmp.Or(req.URL.Query().Get("sort"), "duration")
		list := rows()
		if err := SortStatus(list, key); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = statusPage.Execute(w, struct {
			Rows   []StatusRow
			Counts []StateCount
			Now    time.Time
		}{list, CountStates(list), time.Now()})
	})
}

// Status is the running dispatcher's view of its inventory.
func (r *Runner) Status() []StatusRow {
	r.mu.Lock()
	hosts := r.hosts
	r.mu.Unlock()
	return BuildStatus(r.o.Site, hosts, r.states.Snapshot())
}
