// Package natstest starts a real nats-server process (the binary that
// hack/testenv installs) for tests that must run against an external
// JetStream server rather than Gantry's embedded one.
package natstest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Server is a running nats-server.
type Server struct {
	URL     string
	LogFile string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Start runs bin with JetStream on a fresh store dir, on a free loopback
// port, logging to a file, and stops it when the test ends. token, if not
// empty, is required of clients.
func Start(t testing.TB, bin, token string) *Server {
	t.Helper()
	dir := t.TempDir()
	args := []string{"-js", "-sd", filepath.Join(dir, "store"), "-a", "127.0.0.1", "-p", "-1", "-n", "gantry-test"}
	if token != "" {
		args = append(args, "--auth", token)
	}
	return launch(t, bin, dir, args, nil)
}

// launch runs bin ARGS in dir with its log in dir/nats-server.log and
// waits for its client port (written to a ports file in dir).
func launch(t testing.TB, bin, dir string, args, env []string) *Server {
	t.Helper()
	if bin == "" {
		t.Fatal("natstest: no nats-server binary (GANTRY_NATS_SERVER); run `hack/testenv up`")
	}
	s := &Server{LogFile: filepath.Join(dir, "nats-server.log")}
	args = append(args, "--ports_file_dir", dir, "-l", s.LogFile)
	s.cmd = exec.Command(bin, args...)
	s.cmd.Dir = dir
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("natstest: start %s: %v", bin, err)
	}
	s.exited = make(chan struct{})
	exited := s.exited
	var waitErr error
	go func() { waitErr = s.cmd.Wait(); close(exited) }()
	t.Cleanup(s.Stop)
	portsFile := filepath.Join(dir, fmt.Sprintf("%s_%d.ports", filepath.Base(bin), s.cmd.Process.Pid))
	deadline := time.Now().Add(15 * time.Second)
	for {
		if b, err := os.ReadFile(portsFile); err == nil {
			var p struct {
				Nats []string `json:"nats"`
			}
			if json.Unmarshal(b, &p) == nil && len(p.Nats) > 0 {
				s.URL = p.Nats[0]
				return s
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(s.LogFile)
			t.Fatalf("natstest: nats-server exited: %v\n%s", waitErr, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.LogFile)
			t.Fatalf("natstest: nats-server did not write %s within 15s\n%s", portsFile, log)
		}
	}
}

// Kill SIGKILLs the server (no shutdown, no flush) and waits for it to
// exit: a crashed node.
func (s *Server) Kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
}

// Stop terminates the server (SIGTERM, then SIGKILL after 10 s) and waits
// for it to exit: for tests of what clients do when their server goes
// away. Stopping twice is harmless.
func (s *Server) Stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}
