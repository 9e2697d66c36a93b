package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/flock-snmp/flock/internal/dispatch"
)

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// OnceProgress shows a --once run's progress on w (records in, ok, failed,
// remaining, rate) when show is true, which should be when w is a terminal:
// piped or logged, stderr stays clean. finish clears the bar.
func OnceProgress(w io.Writer, show bool, hosts int) (update func(dispatch.Summary), finish func()) {
	if !show || hosts == 0 {
		return nil, func() {}
	}
	bar := progressbar.NewOptions(hosts,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("polling"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("records"),
		progressbar.OptionSetWidth(30),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetPredictTime(true),
	)
	var mu sync.Mutex
	var drawn time.Time
	return func(s dispatch.Summary) {
			mu.Lock()
			defer mu.Unlock()
			// At most ten redraws a second, and always the last one.
			if now := time.Now(); now.Sub(drawn) >= 100*time.Millisecond || s.OK+s.Failed == s.Hosts {
				drawn = now
				bar.Describe(ProgressText(s))
				_ = bar.Set(s.OK + s.Failed)
			}
		}, func() {
			mu.Lock()
			defer mu.Unlock()
			_ = bar.Finish()
			_ = bar.Clear()
		}
}

// ProgressText is the progress bar's description for s.
func ProgressText(s dispatch.Summary) string {
	return fmt.Sprintf("ok=%d failed=%d remaining=%d", s.OK, s.Failed, s.Hosts-s.OK-s.Failed)
}
