// Package procs runs Flock's binaries (and nats-server) as child processes
// for the soak and the load harness: built here, logged to files, stopped
// by signal, with the CPU time and peak memory the kernel accounted.
package procs

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Build compiles dispatcher, poller and snmpsim (with gosnmp_nodebug) and
// nats-server (from its module) into dir/bin. It runs in the module root.
func Build(ctx context.Context, dir string) error {
	bin := filepath.Join(dir, "bin") + "/"
	for _, args := range [][]string{
		{"build", "-tags", "gosnmp_nodebug", "-o", bin, "./cmd/dispatcher", "./cmd/poller", "./cmd/snmpsim"},
		{"build", "-o", bin + "nats-server", "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// Proc is a running child process.
type Proc struct {
	Name  string
	Log   string // its stdout and stderr
	cmd   *exec.Cmd
	done  chan struct{}
	usage *syscall.Rusage
	hwm   atomic.Int64 // peak resident KiB of the process's own image (VmHWM), sampled while it runs
}

var seq atomic.Int64

// Start runs dir/bin/<bin> (or bin, when it is an absolute path) with args
// and only env (plus PATH).
func Start(dir, name, bin string, env []string, args ...string) (*Proc, error) {
	logPath := filepath.Join(dir, "logs", fmt.Sprintf("%s.%d.log", name, seq.Add(1)))
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	path := bin
	if !filepath.IsAbs(bin) {
		path = filepath.Join(dir, "bin", bin)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go p.sampleRSS()
	go func() {
		_ = cmd.Wait()
		f.Close()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.usage = ru
		}
		close(p.done)
	}()
	return p, nil
}

// Stop signals p and waits for it to exit; SIGKILL after 20s.
func (p *Proc) Stop(sig syscall.Signal) {
	p.readHWM()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Wait waits for p to exit by itself and returns its exit code.
func (p *Proc) Wait(within time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(within):
		return -1, fmt.Errorf("%s did not exit within %s", p.Name, within)
	}
}

// CPU is the user and system time the process used; valid after it exited.
func (p *Proc) CPU() time.Duration {
	if p.usage == nil {
		return 0
	}
	return time.Duration(p.usage.Utime.Nano() + p.usage.Stime.Nano())
}

// MaxRSSMB is the process's peak resident memory in MB, as /proc's VmHWM
// said last (sampled every 20 ms while it ran, and when Stop is called).
// Not the rusage's maxrss: Linux counts in it the parent's resident memory
// at the fork (Go starts children with vfork), so every child of a harness
// that grew would report at least the harness's size.
func (p *Proc) MaxRSSMB() float64 {
	if kb := p.hwm.Load(); kb > 0 {
		return float64(kb) / 1024
	}
	if p.usage == nil {
		return 0
	}
	return float64(p.usage.Maxrss) / 1024 // KiB on Linux
}

// sampleRSS keeps the process's VmHWM until it exits.
func (p *Proc) sampleRSS() {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		p.readHWM()
		select {
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

func (p *Proc) readHWM() {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return // gone, or not Linux
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			for err == nil {
				old := p.hwm.Load()
				if kb <= old || p.hwm.CompareAndSwap(old, kb) {
					break
				}
			}
			return
		}
	}
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreeUDPPort is a loopback UDP port nobody listens on now.
func FreeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// WaitFile waits until path exists and is not empty.
func WaitFile(path string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not appear within %s", path, within)
}

// CPUSoFar is the user and system time the running process has used so
// far, from /proc/<pid>/stat (clock ticks, 10 ms at USER_HZ 100): the load
// harness takes it around a measured cycle so that start-up work (loading
// the configuration, a warm-up) is not charged to the cycle.
func (p *Proc) CPUSoFar() (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.Name, err)
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	rest := string(data[bytes.LastIndexByte(data, ')')+2:])
	f := strings.Fields(rest) // f[0] is field 3 (state): utime is field 14, stime 15
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: short /proc stat %q", p.Name, data)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: /proc stat %q: bad utime/stime", p.Name, data)
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}
