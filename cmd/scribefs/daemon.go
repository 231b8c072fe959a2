package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/scribefs/scribefs/internal/config"
)

// readyPipe is the write end a --daemon parent handed this process; nil in a
// foreground mount.
type readyPipe struct{ f *os.File }

// takeReadyPipe claims the descriptor named by SCRIBEFS_READY_FD, and
// removes the variable so nothing this process starts inherits it.
func takeReadyPipe() *readyPipe {
	v := os.Getenv(readyEnv)
	if v == "" {
		return nil
	}
	os.Unsetenv(readyEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	return &readyPipe{f: os.NewFile(uintptr(fd), "ready")}
}

// report tells the parent the outcome, once: "ok", or the error.
func (p *readyPipe) report(err error) {
	if p == nil || p.f == nil {
		return
	}
	if err == nil {
		io.WriteString(p.f, "ok\n")
	} else {
		io.WriteString(p.f, "error: "+oneLine(err)+"\n")
	}
	p.f.Close()
	p.f = nil
}

// daemonize starts this same command again without --daemon, in a new
// session with its output appended to the log file, and waits until the
// child says the mount is ready or fails (or dies, which closes the pipe).
func daemonize(c *cli.Context, cfg *config.Config, mnt string) error {
	logPath := c.String("log-file")
	if logPath == "" {
		logPath = filepath.Join(filepath.Dir(cfg.Storage.Hot.Path), "scribefs.log")
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return fmt.Errorf("log file %s: %w", logPath, err)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log file %s: %w", logPath, err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	rd, wr, err := os.Pipe()
	if err != nil {
		return err
	}
	defer rd.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var args []string
	for _, a := range os.Args[1:] {
		if a == "--daemon" || a == "-daemon" || a == "-d" || strings.HasPrefix(a, "--daemon=") || strings.HasPrefix(a, "-daemon=") {
			continue
		}
		args = append(args, a)
	}
	cmd := exec.Command(self, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.ExtraFiles = []*os.File{wr} // fd 3
	cmd.Env = append(os.Environ(), readyEnv+"=3")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		wr.Close()
		return fmt.Errorf("starting the mount process: %w", err)
	}
	wr.Close()
	pid := cmd.Process.Pid
	cmd.Process.Release()

	// A mount waits up to ~10s for the first bucket listing, plus S3
	// round trips for the lease; two minutes means something is stuck.
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(rd, 64<<10))
		got <- strings.TrimSpace(string(b))
	}()
	select {
	case msg := <-got:
		switch {
		case msg == "ok":
			fmt.Fprintf(c.App.Writer, "scribefs: mounted %s (pid %d, log %s)\n", mnt, pid, logPath)
			return nil
		case strings.HasPrefix(msg, "error: "):
			return fmt.Errorf("mount %s: %s (log: %s)", mnt, strings.TrimPrefix(msg, "error: "), logPath)
		default:
			return fmt.Errorf("mount %s: the mount process exited before the mount was ready (log: %s)", mnt, logPath)
		}
	case <-time.After(2 * time.Minute):
		syscall.Kill(pid, syscall.SIGTERM)
		return fmt.Errorf("mount %s: not ready after 2m; stopped it (log: %s)", mnt, logPath)
	}
}
