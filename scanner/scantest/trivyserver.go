package scantest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TrivyServer is a real `trivy server` process started for a test.
type TrivyServer struct {
	// URL is http://127.0.0.1:PORT, what scanner.server takes.
	URL string
	// Token is the server's token (sent in the Trivy-Token header).
	Token string
	// LogFile holds the server's output.
	LogFile string

	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has exited
	stopOnce sync.Once
}

// StartTrivyServer starts `trivy server` from the trivy CLI at trivyBin
// (hack/testenv installs it: testenv.Env.Trivy) on a free loopback port,
// with a random token, a cache dir of its own and its vulnerability DB
// downloaded from dbRepository at start-up, exactly as a production server
// gets it from a mirror. Its output goes to a file in t.TempDir(). It
// returns once the server answers /healthz, and stops it in t.Cleanup.
//
// dbRepository is on the test environment's plain-HTTP registry, which the
// trivy CLI reaches only with its global --insecure switch: that switch is
// confined to the server process and to this test.
func StartTrivyServer(t testing.TB, trivyBin, dbRepository string) *TrivyServer {
	t.Helper()
	if trivyBin == "" {
		t.Fatal("no trivy CLI: the test environment's env file lacks GANTRY_TRIVY; run `hack/testenv up` (it installs trivy)")
	}
	dir := t.TempDir()
	var token [16]byte
	_, _ = rand.Read(token[:])
	s := &TrivyServer{Token: hex.EncodeToString(token[:]), LogFile: filepath.Join(dir, "trivy-server.log")}
	// The port is picked by the kernel and released before trivy binds it;
	// another process can take it in between, so a bind failure is retried
	// on a new port.
	var err error
	for range 3 {
		if err = s.start(trivyBin, dbRepository, dir); err == nil {
			t.Cleanup(func() { _ = s.Stop() })
			return s
		}
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	t.Fatalf("trivy server: %v", err)
	return nil
}

var errAddrInUse = errors.New("address already in use")

func (s *TrivyServer) start(trivyBin, dbRepository, dir string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(trivyBin, "server", "--listen", addr,
		"--cache-dir", filepath.Join(dir, "cache"), "--db-repository", dbRepository,
		"--insecure", "--no-progress", "--timeout", "2m")
	// The token travels in the environment, not in argv where any local
	// user could read it. HOME and the working dir are the test's own, so
	// no trivy.yaml, module dir or TRIVY_* setting of the machine applies.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TRIVY_TOKEN=" + s.Token}
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.exited, s.URL = cmd, make(chan struct{}), "http://"+addr
	go func() { _ = cmd.Wait(); close(s.exited) }()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.exited:
			out := s.logTail()
			if bytes.Contains(out, []byte(errAddrInUse.Error())) {
				return fmt.Errorf("%s: %w", addr, errAddrInUse)
			}
			return fmt.Errorf("exited before it was ready (%v); log %s:\n%s", cmd.ProcessState, s.LogFile, out)
		case <-ctx.Done():
			_ = s.Stop()
			return fmt.Errorf("not ready on %s within 2m; log %s:\n%s", addr, s.LogFile, s.logTail())
		case <-tick.C:
			if healthy(ctx, client, s.URL) {
				return nil
			}
		}
	}
}

// Stop ends the server (SIGTERM, then SIGKILL after 10s) and waits for it.
// It is safe to call more than once; tests call it to take the server down.
func (s *TrivyServer) Stop() error {
	var err error
	s.stopOnce.Do(func() {
		select {
		case <-s.exited:
			return
		default:
		}
		if err = s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			return
		}
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			err = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	return err
}

func healthy(ctx context.Context, c *http.Client, base string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", http.NoBody)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (s *TrivyServer) logTail() []byte {
	b, _ := os.ReadFile(s.LogFile)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return b
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreeLoopbackURL returns http://127.0.0.1:PORT with nothing listening on
// PORT (a moment ago): a server that is down.
func FreeLoopbackURL() (string, error) {
	p, err := freePort()
	if err != nil {
		return "", err
	}
	return "http://127.0.0.1:" + strconv.Itoa(p), nil
}
