package dispatch

import (
	"cmp"
	"context"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flock-snmp/flock/internal/config"
	"github.com/flock-snmp/flock/internal/fleet"
	"github.com/flock-snmp/flock/internal/lease"
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
	Site                string
	State               string
	LastSuccessAt       time.Time
	LastPollAt          time.Time
	LastDurationMS      float64
	LastError           *task.Error
	ConsecutiveFailures int
}

// BuildStatus lists the inventory's hosts with what states says of them,
// keyed by <site>.<hostkey>. A host without a state is unknown.
func BuildStatus(hosts []config.Host, states map[string]HostState) []StatusRow {
	rows := make([]StatusRow, 0, len(hosts))
	for i := range hosts {
		h := &hosts[i]
		row := StatusRow{Host: h.Name, Site: h.Site, State: StateUnknown}
		if hs, ok := states[task.HostStateKey(h.Site, h.Key)]; ok && !hs.LastPollAt.IsZero() {
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
	fmt.Fprintln(tw, "HOST\tSTATE\tSITE\tLAST DURATION\tLAST SUCCESS\tFAILURES\tLAST ERROR")
	for _, r := range rows {
		dur := "-"
		if !r.LastPollAt.IsZero() {
			dur = fmt.Sprintf("%.1fms", r.LastDurationMS)
		}
		msg := "-"
		if r.State == StateFailing {
			msg = errText(r.LastError)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.Host, r.State, r.Site, dur, ago(r.LastSuccessAt, now), r.ConsecutiveFailures, msg)
	}
	return tw.Flush()
}

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": ago, "err": errText, "ms": func(f float64) string { return fmt.Sprintf("%.1f", f) },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Flock status</title>
<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin-bottom:1em}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}
.failing,.outage{color:#b00}.unknown{color:#777}section{margin-bottom:1.5em}</style></head><body>
<h1>Flock: {{len .Rows}} hosts, {{len .Sites}} sites</h1>
<p>{{range .Counts}}{{.State}}: {{.N}} &nbsp; {{end}}(as of {{.Now.Format "2006-01-02 15:04:05Z07:00"}})</p>
<h2>Dispatchers</h2>
<ul id="dispatchers">{{range .Dispatchers}}<li>{{.ID}}: {{if .Leading}}leader{{else}}standby{{end}} since {{ago .Since $.Now}}</li>{{else}}<li>none known</li>{{end}}</ul>
<p>This dispatcher: {{.Self}} ({{.Role}}).</p>
{{range .Sites}}<section class="site" id="site-{{.Site}}">
<h2>Site {{.Site}}</h2>
<p>{{.Hosts}} hosts: {{range .Counts}}{{.State}} {{.N}} &nbsp; {{end}}</p>
{{if .Pollers}}<table class="pollers"><thead><tr><th>poller</th><th>in flight</th><th>polls</th><th>last seen</th><th>version</th></tr></thead>
{{range .Pollers}}<tbody><tr><td>{{.ID}}</td><td>{{.InFlight}}</td><td>{{.Polls}}</td><td>{{ago .Seen $.Now}}</td><td>{{.Version}}</td></tr></tbody>{{end}}</table>
{{else}}<p class="outage">No live poller: this site's hosts go unpolled.</p>{{end}}
{{if .Slowest}}<p>Slowest: {{range .Slowest}}{{.Host}} ({{ms .LastDurationMS}} ms) &nbsp; {{end}}</p>{{end}}
{{if .Failing}}<p class="failing">Failing: {{range .Failing}}{{.Host}} ({{err .LastError}}, {{.ConsecutiveFailures}} in a row) &nbsp; {{end}}</p>{{end}}
</section>{{end}}
<h2>Hosts</h2>
<table><tr>
<th><a href="?sort=name">host</a></th><th><a href="?sort=state">state</a></th><th>site</th><th><a href="?sort=duration">last duration (ms)</a></th>
<th><a href="?sort=last_success">last success</a></th><th><a href="?sort=failures">failures</a></th><th>last error</th></tr>
{{range .Rows}}<tr class="{{.State}}"><td>{{.Host}}</td><td>{{.State}}</td><td>{{.Site}}</td><td>{{if not .LastPollAt.IsZero}}{{ms .LastDurationMS}}{{end}}</td>
<td>{{ago .LastSuccessAt $.Now}}</td><td>{{.ConsecutiveFailures}}</td><td>{{if eq .State "failing"}}{{err .LastError}}{{end}}</td></tr>
{{end}}</table></body></html>
`))

// SiteView is one site in the fleet view.
type SiteView struct {
	Site    string
	Hosts   int
	Counts  []StateCount
	Pollers []fleet.Poller // live ones
	Slowest []StatusRow    // up to 5, slowest first
	Failing []StatusRow    // up to 10, most consecutive failures first
}

// FleetView is the whole status view: dispatchers, sites with their
// pollers, slowest and failing hosts, and every host.
type FleetView struct {
	Now         time.Time
	Self, Role  string // this dispatcher and its role (leader or standby)
	Dispatchers []lease.Member
	Sites       []SiteView
	Counts      []StateCount
	Rows        []StatusRow
}

// BuildFleet assembles the view from the hosts' rows, the inventory's
// sites, the live pollers by site and the dispatchers.
func BuildFleet(rows []StatusRow, sites []string, pollers map[string][]fleet.Poller, members []lease.Member, now time.Time) FleetView {
	v := FleetView{Now: now, Dispatchers: members, Counts: CountStates(rows), Rows: rows}
	bySite := map[string][]StatusRow{}
	for _, r := range rows {
		bySite[r.Site] = append(bySite[r.Site], r)
	}
	for _, site := range sites {
		sr := bySite[site]
		sv := SiteView{Site: site, Hosts: len(sr), Counts: CountStates(sr), Pollers: pollers[site]}
		polled := slices.DeleteFunc(slices.Clone(sr), func(r StatusRow) bool { return r.LastPollAt.IsZero() })
		slices.SortStableFunc(polled, func(a, b StatusRow) int { return cmp.Compare(b.LastDurationMS, a.LastDurationMS) })
		sv.Slowest = polled[:min(5, len(polled))]
		failing := slices.DeleteFunc(slices.Clone(sr), func(r StatusRow) bool { return r.State != StateFailing })
		slices.SortStableFunc(failing, func(a, b StatusRow) int { return cmp.Compare(b.ConsecutiveFailures, a.ConsecutiveFailures) })
		sv.Failing = failing[:min(10, len(failing))]
		v.Sites = append(v.Sites, sv)
	}
	return v
}

// WriteFleetText writes the view as text: the hosts' table first (as the
// status view was before sites), then, after a blank line, the
// dispatchers and each site with its pollers, slowest and failing hosts.
func WriteFleetText(w io.Writer, v FleetView) error {
	if err := WriteStatusText(w, v.Rows, v.Now); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nDISPATCHERS")
	if len(v.Dispatchers) == 0 {
		fmt.Fprintln(tw, "  none running")
	}
	for _, m := range v.Dispatchers {
		role := "standby"
		if m.Leading {
			role = "leader"
		}
		fmt.Fprintf(tw, "  %s\t%s\tsince %s\n", m.ID, role, ago(m.Since, v.Now))
	}
	for _, sv := range v.Sites {
		var counts []string
		for _, c := range sv.Counts {
			counts = append(counts, fmt.Sprintf("%s %d", c.State, c.N))
		}
		fmt.Fprintf(tw, "\nSITE %s: %d hosts (%s), %d live pollers\n", sv.Site, sv.Hosts, strings.Join(counts, ", "), len(sv.Pollers))
		if len(sv.Pollers) == 0 {
			fmt.Fprintln(tw, "  no live poller: this site's hosts go unpolled")
		}
		for _, p := range sv.Pollers {
			fmt.Fprintf(tw, "  poller %s\tin flight %d\tpolls %d\tlast seen %s\n", p.ID, p.InFlight, p.Polls, ago(p.Seen, v.Now))
		}
		for _, r := range sv.Slowest {
			fmt.Fprintf(tw, "  slowest %s\t%.1fms\t\t\n", r.Host, r.LastDurationMS)
		}
		for _, r := range sv.Failing {
			fmt.Fprintf(tw, "  failing %s\t%d in a row\t%s\t\n", r.Host, r.ConsecutiveFailures, errText(r.LastError))
		}
	}
	return tw.Flush()
}

// StatusHandler serves the fleet view as HTML (?sort=duration|name|...
// orders the hosts); view is called per request.
func StatusHandler(view func() FleetView) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		key := cmp.Or(req.URL.Query().Get("sort"), "duration")
		v := view()
		if err := SortStatus(v.Rows, key); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = statusPage.Execute(w, v)
	})
}

// Status is the dispatcher's view of its inventory: its own host states
// while it leads, the store's (read at most every 5 s) while it stands by.
func (r *Runner) Status() []StatusRow {
	r.mu.Lock()
	hosts, running := r.hosts, r.running
	r.mu.Unlock()
	if running {
		return BuildStatus(hosts, r.states.Snapshot())
	}
	return BuildStatus(hosts, r.cache.get(r.o.State))
}

// Fleet is the whole status view of this dispatcher.
func (r *Runner) Fleet(ctx context.Context, self string) FleetView {
	var pollers map[string][]fleet.Poller
	if r.o.Pollers != nil {
		pollers = r.o.Pollers()
	}
	var members []lease.Member
	if r.o.Members != nil {
		members, _ = r.o.Members(ctx)
	}
	v := BuildFleet(r.Status(), r.Sites(), pollers, members, time.Now())
	v.Self, v.Role = self, "standby"
	if r.o.Leading() {
		v.Role = "leader"
	}
	return v
}
