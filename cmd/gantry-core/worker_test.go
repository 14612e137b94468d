package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/natstest"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/internal/tlsreload"
	"github.com/gantry-dev/gantry/internal/wait"
	"github.com/gantry-dev/gantry/pipelines"
)

// TestWorkerListener runs `gantry worker` as a process with worker.listen
// against an external nats-server, over TLS and over explicitly allowed
// plain HTTP: health, readiness that follows the queue, the worker's own
// metrics, and exactly one TCP listener.
func TestWorkerListener(t *testing.T) {
	t.Parallel()
	env := testenv.Require(t)
	for _, mode := range []string{"tls", "insecure-http"} {
		t.Run(mode, func(t *testing.T) {
			ns := natstest.Start(t, env.NATSServer, "")
			dir := t.TempDir()
			calls := filepath.Join(dir, "calls")
			args := []string{"worker", "--nats-url", ns.URL, "--workers", "1", "--listen", "127.0.0.1:0",
				"--test-stages", "record:" + calls + ":2:10ms"}
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			scheme := "http"
			if mode == "tls" {
				caPEM, certPEM, keyPEM, err := tlsreload.Generate([]string{"127.0.0.1"}, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
				if err := os.WriteFile(cert, certPEM, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
					t.Fatal(err)
				}
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(caPEM)
				client.Transport = &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}}
				scheme = "https"
				args = append(args, "--tls-cert", cert, "--tls-key", key)
			} else {
				args = append(args, "--insecure-http")
			}

			// One run waits in the queue, so the worker's run and stage
			// metrics have something to count.
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			sealer, cfg := sealedWorkerConfig(t, dir)
			args = append(args, "--config", cfg)
			q, err := pipelines.Open(ctx, pipelines.Options{Connection: pipelines.Connection{URL: ns.URL}, Sealer: sealer})
			if err != nil {
				t.Fatal(err)
			}
			e, err := q.Enqueue(ctx, pipelines.Request{DeliveryID: "listener-" + mode, Repo: "acme/app", CloneURL: "https://github.com/acme/app.git",
				Ref: "refs/heads/main", Commit: fmt.Sprintf("%040x", 1)})
			if err != nil {
				t.Fatal(err)
			}
			p := startGantry(t, filepath.Join(dir, "worker.log"), args...)
			waitRunFinal(ctx, t, q, e.RunID, p)
			q.Close()

			get := func(path string) (int, string) {
				t.Helper()
				resp, err := client.Get(scheme + "://" + p.addr + path)
				if err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
				return resp.StatusCode, string(b)
			}
			for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
				if code, body := get(path); code != 200 {
					t.Errorf("GET %s: %d %s, want 200", path, code, body)
				}
			}
			for _, path := range []string{"/api/v1/runs", "/webhooks/github", "/ui/"} {
				if code, _ := get(path); code != 404 {
					t.Errorf("GET %s: %d, want 404 (the worker serves probes and metrics only)", path, code)
				}
			}
			_, metrics := get("/metrics")
			for _, want := range []string{
				`gantry_runs_finished_total{state="passed"} 1`,
				`gantry_stage_duration_seconds_count{stage="record-1",state="passed"} 1`,
				`gantry_stage_duration_seconds_count{stage="record-2",state="passed"} 1`,
				"gantry_runs_in_flight 0", "gantry_queue_depth 0", "go_goroutines ", "process_cpu_seconds_total ",
			} {
				if !strings.Contains(metrics, want) {
					t.Errorf("/metrics lacks %q:\n%s", want, grepLines(metrics, "gantry_"))
				}
			}
			if mode == "tls" {
				// Plain HTTP to the TLS port never reaches a handler.
				resp, err := http.Get("http://" + p.addr + "/healthz")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusBadRequest {
						t.Errorf("plain HTTP to the TLS listener: %d, want 400", resp.StatusCode)
					}
				}
			}
			if got := listeningTCP(t, p.cmd.Process.Pid); len(got) != 1 || got[0] != p.addr {
				t.Errorf("listening sockets %v, want only %s", got, p.addr)
			}

			// The queue goes away: not ready, still alive, depth unknown.
			ns.Stop()
			body := wait.For(t, 30*time.Second, "/readyz to answer 503 after nats-server stopped", func() (string, error) {
				code, body := get("/readyz")
				switch code {
				case http.StatusServiceUnavailable:
					return body, nil
				case http.StatusOK:
					return "", errors.New("still 200")
				}
				t.Fatalf("/readyz after nats-server stopped: %d %s, want 503", code, body)
				return "", nil
			})
			if !strings.Contains(body, "queue unavailable") {
				t.Errorf("/readyz 503 body %q", body)
			}
			if code, _ := get("/healthz"); code != 200 {
				t.Errorf("/healthz with the queue down: %d, want 200 (liveness must not restart a worker for a NATS outage)", code)
			}
			if _, m := get("/metrics"); !strings.Contains(m, "gantry_queue_depth -1") {
				t.Errorf("/metrics with the queue down:\n%s", grepLines(m, "gantry_queue_depth"))
			}

			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
				if p.err != nil {
					t.Fatalf("worker exit after SIGTERM: %v\n%s", p.err, readFile(t, p.logFile))
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("worker did not exit within 30s of SIGTERM\n%s", readFile(t, p.logFile))
			}
		})
	}
}

// TestWorkerWithoutListenOpensNoPort: the default worker executes runs and
// accepts no connection at all.
func TestWorkerWithoutListenOpensNoPort(t *testing.T) {
	env := testenv.Require(t)
	ns := natstest.Start(t, env.NATSServer, "")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sealer, cfg := sealedWorkerConfig(t, dir)
	q, err := pipelines.Open(ctx, pipelines.Options{Connection: pipelines.Connection{URL: ns.URL}, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	e, err := q.Enqueue(ctx, pipelines.Request{DeliveryID: "no-listener", Repo: "acme/app", CloneURL: "https://github.com/acme/app.git",
		Ref: "refs/heads/main", Commit: fmt.Sprintf("%040x", 2)})
	if err != nil {
		t.Fatal(err)
	}
	// TLS flags alone do not open a listener either.
	p := startGantryUntil(t, regexp.MustCompile(`msg="worker started"`), filepath.Join(dir, "worker.log"),
		"worker", "--config", cfg, "--nats-url", ns.URL, "--insecure-http", "--test-stages", "record:"+filepath.Join(dir, "calls")+":1:0s")
	waitRunFinal(ctx, t, q, e.RunID, p)
	if got := listeningTCP(t, p.cmd.Process.Pid); len(got) != 0 {
		t.Errorf("gantry worker without worker.listen listens on %v", got)
	}
	if log := readFile(t, p.logFile); strings.Contains(log, "msg=serving") {
		t.Errorf("gantry worker without worker.listen serves:\n%s", log)
	}
}

func TestWorkerListenUsageErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("queue:\n  dataDir: "+filepath.Join(dir, "d")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Refused before any connection: the NATS URL is never dialled.
	base := []string{"worker", "--config", cfg, "--nats-url", "nats://127.0.0.1:1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "127.0.0.1:0"}, "no serving certificate"},
		{[]string{"--listen", "nonsense", "--insecure-http"}, "worker.listen"},
		{[]string{"--listen", "127.0.0.1:0", "--tls-cert", filepath.Join(dir, "missing.crt"), "--tls-key", filepath.Join(dir, "missing.key")}, "missing.crt"},
	} {
		args := append(append([]string(nil), base...), tc.args...)
		code, _, stderr := gantryWithTimeout(t, args...)
		if code != exitFailure || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want exit 2 mentioning %q", tc.args, code, stderr, tc.want)
		}
	}
}

func waitRunFinal(ctx context.Context, t *testing.T, q *pipelines.Queue, id string, p *gantryProc) {
	t.Helper()
	for {
		r, err := q.Get(ctx, id)
		if err == nil && r.State.Final() {
			if r.State != pipelines.StatePassed {
				t.Fatalf("run %s: %+v", id, r)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("run %s not executed by gantry worker\n%s", id, readFile(t, p.logFile))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// listeningTCP returns the local addresses of the TCP sockets in LISTEN
// state that process pid holds open (its fds matched against
// /proc/PID/net/tcp{,6} by inode).
func listeningTCP(t *testing.T, pid int) []string {
	t.Helper()
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
				continue
			}
			out = append(out, procAddr(t, f[1]))
		}
	}
	return out
}

// procAddr turns /proc/net/tcp's "0100007F:1F90" into "127.0.0.1:8080"
// (IPv4 only; IPv6 is returned as found).
func procAddr(t *testing.T, s string) string {
	host, port, _ := strings.Cut(s, ":")
	var p int
	if _, err := fmt.Sscanf(port, "%X", &p); err != nil {
		t.Fatalf("port %q: %v", port, err)
	}
	if len(host) != 8 {
		return fmt.Sprintf("[%s]:%d", host, p)
	}
	var ip [4]byte
	for i := range 4 {
		var b int
		if _, err := fmt.Sscanf(host[2*i:2*i+2], "%X", &b); err != nil {
			t.Fatalf("address %q: %v", host, err)
		}
		ip[3-i] = byte(b) // little-endian on the machines this runs on
	}
	return fmt.Sprintf("%d.%d.%d.%d:%d", ip[0], ip[1], ip[2], ip[3], p)
}
