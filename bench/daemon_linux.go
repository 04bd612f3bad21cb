package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/weft-dev/weft/netlab"
)

// stopTimeout is how long a daemon gets after SIGTERM to remove its devices
// and routes before it is killed.
const stopTimeout = 10 * time.Second

// daemon is a long-running process inside a namespace (weftd, flanneld,
// iperf3 -s, etcd), its output going to a log file in the run's directory.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid once done is closed
	// anyExit accepts any exit status after SIGTERM; iperf3, for one,
	// exits 1 when interrupted. A forwarding daemon's status is checked,
	// since a failed cleanup on SIGTERM is a bug worth reporting.
	anyExit bool
}

// startDaemon starts args in ns, logging to dir/name.log.
func startDaemon(ctx context.Context, t *netlab.Topology, ns, dir, name string, args ...string) (*daemon, error) {
	return startDaemonEnv(ctx, t, ns, dir, name, nil, args...)
}

// startDaemonEnv is startDaemon with the environment environ; nil inherits
// the harness's.
func startDaemonEnv(ctx context.Context, t *netlab.Topology, ns, dir, name string, environ []string, args ...string) (*daemon, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own copy
	cmd := t.Command(ctx, ns, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = environ
	// Its own process group, so a Ctrl-C at the terminal reaches only the
	// harness, which then stops the daemon in order (SIGTERM, cleanup).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// exited reports whether the process has ended, and how.
func (d *daemon) exited() (bool, error) {
	select {
	case <-d.done:
		return true, d.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM, waits up to stopTimeout, then kills. It reports a
// daemon that had already died, or that had to be killed, as an error: both
// mean it may have left devices or routes behind.
func (d *daemon) stop() error {
	if ok, err := d.exited(); ok {
		if canceled(err) {
			return nil // the run's context ended: Command sent SIGTERM
		}
		return fmt.Errorf("%s had exited before stop (%s)%s", d.name, exitDesc(err), d.logTail())
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		var ee *exec.ExitError
		if d.err != nil && !d.anyExit && !canceled(d.err) && !(errors.As(d.err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGTERM) {
			return fmt.Errorf("%s: %v%s", d.name, d.err, d.logTail())
		}
		return nil
	case <-time.After(stopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("%s ignored SIGTERM for %v and was killed%s", d.name, stopTimeout, d.logTail())
	}
}

// logTail returns the last lines of the daemon's log for an error message.
func (d *daemon) logTail() string {
	data, err := os.ReadFile(d.log)
	if err != nil || len(data) == 0 {
		return ""
	}
	const keep = 1500
	if len(data) > keep {
		data = data[len(data)-keep:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return "\n--- " + d.log + " (tail) ---\n" + string(bytes.TrimRight(data, "\n"))
}

// exitDesc says how a process ended, given Wait's error.
func exitDesc(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// canceled reports whether Wait failed only because the run's context ended.
func canceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
