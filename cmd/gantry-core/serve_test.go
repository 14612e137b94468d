package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/natstest"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/pipelines/pipelinestest"
	"github.com/gantry-dev/gantry/webhooks"
)

// The process tests run `gantry serve` as a child process: the test binary
// re-executes itself into TestGantryProcess, which runs the CLI's run()
// (exactly what main does) with the arguments in $GANTRY_TEST_PROCESS_ARGS.
// That is the real command in its own process, which can be SIGKILLed,
// without linking a second copy of the binary.
const processArgsEnv = "GANTRY_TEST_PROCESS_ARGS"

func TestGantryProcess(t *testing.T) {
	raw := os.Getenv(processArgsEnv)
	if raw == "" {
		t.Skip("helper process for the serve tests")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		panic(err)
	}
	os.Exit(run(args, os.Stdout, os.Stderr, os.Environ()))
}

type gantryProc struct {
	cmd     *exec.Cmd
	addr    string
	logFile string
	done    chan struct{}
	err     error
}

var servingRE = regexp.MustCompile(`msg=serving addr=(\S+)`)

// startGantry starts `gantry serve ARGS...` and waits until it listens.
func startGantry(t *testing.T, logFile string, args ...string) *gantryProc {
	t.Helper()
	return startGantryUntil(t, servingRE, logFile, args...)
}

// startGantryUntil starts gantry ARGS... and waits for a log line matching
// ready (its first group, if any, becomes addr).
func startGantryUntil(t *testing.T, ready *regexp.Regexp, logFile string, args ...string) *gantryProc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(args)
	cmd := exec.Command(self, "-test.run=^TestGantryProcess$")
	cmd.Env = append(os.Environ(), processArgsEnv+"="+string(b))
	before := len(ready.FindAllString(readFile(t, logFile), -1))
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &gantryProc{cmd: cmd, logFile: logFile, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		// The log file is shared by restarts: only a line after `before` counts.
		if m := ready.FindAllStringSubmatch(readFile(t, logFile), -1); len(m) > before {
			if last := m[len(m)-1]; len(last) > 1 {
				p.addr = last[1]
			}
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("gantry serve exited: %v\n%s", p.err, readFile(t, logFile))
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("gantry serve did not start listening\n%s", readFile(t, logFile))
	return nil
}

func (p *gantryProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func readFile(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

const testSecret = "kill-9 test secret"

type serveRig struct {
	dir, config, token, calls string
}

// newServeRig writes a config (acme/app, every branch), a webhook secret
// and an API token for `gantry serve`.
func newServeRig(t *testing.T, natsURL string) *serveRig {
	r := &serveRig{dir: t.TempDir(), token: "test-token-" + fmt.Sprint(time.Now().UnixNano())}
	r.calls = filepath.Join(r.dir, "calls")
	sum := sha256.Sum256([]byte(r.token))
	write := func(name, content string) string {
		p := filepath.Join(r.dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := write("secret", testSecret+"\n")
	tokens := write("tokens", "# test\nsha256:"+hex.EncodeToString(sum[:])+" kill-test\n")
	r.config = write("gantry.yaml", fmt.Sprintf(`
server:
  listen: 127.0.0.1:0
  metricsListen: 127.0.0.1:0
  shutdownTimeout: 10s
  insecureHTTP: true
webhooks:
  githubSecretFiles: [%q]
  repos:
    - name: acme/app
      branches: ["*"]
queue:
  dataDir: %q
  natsURL: %q
  ackWait: 2s
  workers: 4
  retryDelay: 100ms
api:
  tokensFile: %q
`, secret, filepath.Join(r.dir, "data"), natsURL, tokens))
	return r
}

func (r *serveRig) start(t *testing.T) *gantryProc {
	return startGantry(t, filepath.Join(r.dir, "serve.log"), "serve", "--config", r.config,
		"--test-stages", "record:"+r.calls+":3:150ms")
}

func push(t *testing.T, addr, delivery, branch string, n int) webhooks.Answer {
	t.Helper()
	sha := fmt.Sprintf("%040x", n)
	a, code := postPush(t, addr, testSecret, pushDelivery{Repo: "acme/app", Ref: "refs/heads/" + branch, After: sha, ID: delivery})
	if code != 202 && code != 200 {
		t.Fatalf("push %s: %d %+v", delivery, code, a)
	}
	return a
}

// pushDelivery is a GitHub push event as the tests send it to gantry serve.
type pushDelivery struct {
	Repo, Ref     string
	Before, After string // Before "" leaves the field out
	ID            string // X-GitHub-Delivery
}

// postPush sends d to gantry serve at addr, signed with secret, and
// returns the answer and the HTTP status.
func postPush(t *testing.T, addr, secret string, d pushDelivery) (webhooks.Answer, int) {
	t.Helper()
	ev := map[string]any{
		"ref": d.Ref, "after": d.After,
		"repository":  map[string]any{"full_name": d.Repo, "clone_url": "https://github.com/" + d.Repo + ".git"},
		"sender":      map[string]any{"login": "octocat"},
		"head_commit": map[string]any{"id": d.After, "message": "change"},
	}
	if d.Before != "" {
		ev["before"] = d.Before
	}
	body, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/webhooks/github", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", d.ID)
	req.Header.Set("X-Hub-Signature-256", webhooks.Sign([]byte(secret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a webhooks.Answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return a, resp.StatusCode
}

func apiGet(t *testing.T, addr, token, path string, into any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading the answer: %v", path, err)
	}
	if into != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, into); err != nil {
			if s, ok := into.(*string); ok {
				*s = string(b)
			} else {
				t.Fatalf("%s: %v\n%s", path, err, b)
			}
		}
	}
	return resp.StatusCode
}

// TestServeSurvivesKill9 queues 50 runs, SIGKILLs gantry serve while some
// run and the rest wait, restarts it on the same data, and checks every run
// completes, each stage executed at least once and more than once only for
// stages that were in flight at the kill (at-least-once, idempotent stages).
// It runs against the embedded NATS server and an external nats-server.
func TestServeSurvivesKill9(t *testing.T) {
	t.Parallel()
	env := testenv.Require(t)
	for _, mode := range []string{"embedded", "external"} {
		t.Run(mode, func(t *testing.T) {
			natsURL := ""
			if mode == "external" {
				natsURL = natstest.Start(t, env.NATSServer, "").URL
			}
			rig := newServeRig(t, natsURL)
			p := rig.start(t)
			const runs = 50
			ids := map[string]string{} // delivery → run id
			for i := range runs {
				d := fmt.Sprintf("kill9-%s-%d", mode, i)
				a := push(t, p.addr, d, fmt.Sprintf("b%d", i), i+1)
				if a.Status != "queued" {
					t.Fatalf("delivery %d: %+v", i, a)
				}
				ids[d] = a.RunID
			}
			// Kill once some stages are running and most runs still wait.
			deadline := time.Now().Add(30 * time.Second)
			for {
				c, _ := pipelinestest.ReadCalls(rig.calls)
				if len(c) >= 4 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no stage started\n%s", readFile(t, p.logFile))
				}
				time.Sleep(10 * time.Millisecond)
			}
			p.kill()
			atKill, _ := pipelinestest.ReadCalls(rig.calls)
			inFlight := 0
			for _, c := range atKill {
				if c.Starts > c.Dones {
					inFlight++
				}
			}
			t.Logf("killed with %d stage calls recorded, %d in flight", len(atKill), inFlight)
			if inFlight == 0 {
				t.Fatal("nothing was running at the kill: the test did not test a crash mid-stage")
			}

			p = rig.start(t)
			// The replay guard survived: a redelivery points at the same run.
			for d, id := range ids {
				if a := push(t, p.addr, d, "b0", 1); a.Status != "duplicate" || a.RunID != id {
					t.Fatalf("redelivery after restart: %+v, want duplicate of %s", a, id)
				}
				break
			}
			for d, id := range ids {
				var r pipelines.Run
				deadline := time.Now().Add(120 * time.Second)
				for {
					if code := apiGet(t, p.addr, rig.token, "/api/v1/runs/"+id, &r); code != 200 {
						t.Fatalf("GET run %s: %d", id, code)
					}
					if r.State.Final() {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("run %s (%s) not finished: %+v\n%s", id, d, r, readFile(t, p.logFile))
					}
					time.Sleep(50 * time.Millisecond)
				}
				ok := r.State == pipelines.StatePassed && len(r.Stages) == 3
				for _, s := range r.Stages {
					ok = ok && s.State == pipelines.StatePassed
				}
				if !ok {
					t.Fatalf("run %s: %s %q %+v\nlog lines of the run:\n%s", id, r.State, r.Message, r.Stages, grepLines(readFile(t, p.logFile), "", id))
				}
			}
			final, err := pipelinestest.ReadCalls(rig.calls)
			if err != nil {
				t.Fatal(err)
			}
			extra := 0
			for _, id := range ids {
				for i := 1; i <= 3; i++ {
					key := fmt.Sprintf("%s record-%d", id, i)
					c := final[key]
					if c.Dones < 1 {
						t.Errorf("%s never completed: %+v", key, c)
					}
					if c.Starts > 1 {
						extra += c.Starts - 1
						if k := atKill[key]; k.Starts == 0 {
							t.Errorf("%s ran %d times but had not started before the kill", key, c.Starts)
						}
					}
				}
			}
			// At most the stages in flight at the kill, plus ones that
			// finished but whose record update the kill cut off, run again.
			if extra > inFlight+4 {
				t.Errorf("%d repeated stage executions for %d in flight at the kill", extra, inFlight)
			}
			t.Logf("%d runs passed; %d stage executions repeated after the kill (%d were in flight)", runs, extra, inFlight)

			// Nothing is left in the queue.
			var metrics string
			deadline = time.Now().Add(30 * time.Second)
			for {
				apiGet(t, p.metricsAddr(t), "", "/metrics", &metrics)
				if strings.Contains(metrics, "\ngantry_queue_depth 0\n") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("queue not empty:\n%s", grepLines(metrics, "gantry_"))
				}
				time.Sleep(50 * time.Millisecond)
			}
			if !strings.Contains(metrics, `gantry_webhook_deliveries_total{outcome="duplicate"} 1`) {
				t.Errorf("metrics lack the duplicate delivery:\n%s", grepLines(metrics, "gantry_webhook"))
			}

			// SIGTERM: a clean exit (code 0).
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
				if p.err != nil {
					t.Fatalf("exit after SIGTERM: %v\n%s", p.err, readFile(t, p.logFile))
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no exit within 30s of SIGTERM")
			}
		})
	}
}

// grepLines returns the lines of s that start with prefix and contain
// every one of also.
func grepLines(s, prefix string, also ...string) string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
lines:
	for sc.Scan() {
		for _, a := range also {
			if !strings.Contains(sc.Text(), a) {
				continue lines
			}
		}
		if strings.HasPrefix(sc.Text(), prefix) {
			out = append(out, sc.Text())
		}
	}
	return strings.Join(out, "\n")
}

func TestServeEndpoints(t *testing.T) {
	testenv.Require(t)
	rig := newServeRig(t, "")
	p := rig.start(t)
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", 200},
		{"/readyz", "", 200},
		{"/metrics", "", 404}, // on server.metricsListen only
		{"/metrics", rig.token, 404},
		{"/api/v1/runs", "", 401},
		{"/api/v1/runs", "wrong", 401},
		{"/api/v1/runs", rig.token, 200},
		{"/api/v1/runs/00000000000000000000", rig.token, 404},
	} {
		if code := apiGet(t, p.addr, tc.token, tc.path, nil); code != tc.want {
			t.Errorf("GET %s (token %q): %d, want %d", tc.path, tc.token, code, tc.want)
		}
	}
	if code := apiGet(t, p.metricsAddr(t), "", "/metrics", nil); code != 200 {
		t.Errorf("GET /metrics on the metrics listener: %d", code)
	}
	// A second serve on the same data dir is refused, not a corrupted store.
	code, _, stderr := gantryWithTimeout(t, "serve", "--config", rig.config)
	if code != exitFailure || !strings.Contains(stderr, "in use by another gantry") {
		t.Fatalf("second serve on one data dir: exit %d: %s", code, stderr)
	}
}

func gantryWithTimeout(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(args, &out, &errb, nil) }()
	select {
	case code := <-done:
		return code, out.String(), errb.String()
	case <-ctx.Done():
		t.Fatalf("gantry %v did not return", args)
		return 0, "", ""
	}
}

func TestServeAndWorkerUsageErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("queue:\n  dataDir: "+filepath.Join(dir, "d")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--config", cfg}, "no GitHub webhook secret"},
		{[]string{"serve", "--config", cfg, "--github-webhook-secret-file", filepath.Join(dir, "missing")}, "webhook secret file"},
		{[]string{"serve", "--config", cfg, "--listen", "nonsense"}, "server.listen"},
		{[]string{"serve", "--config", cfg, "--test-stages", "bogus"}, "test stages"},
		{[]string{"worker", "--config", cfg}, "needs --nats-url"},
		{[]string{"worker", "--config", cfg, "--workers", "0"}, "queue.workers"},
	} {
		code, _, stderr := gantryWithTimeout(t, tc.args...)
		if code != exitFailure || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want exit 2 mentioning %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestWorkerProcessExecutesQueuedRuns(t *testing.T) {
	t.Parallel()
	env := testenv.Require(t)
	url := natstest.Start(t, env.NATSServer, "").URL
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sealer, cfg := sealedWorkerConfig(t, dir)
	q, err := pipelines.Open(ctx, pipelines.Options{Connection: pipelines.Connection{URL: url}, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var ids []string
	for i := range 5 {
		e, err := q.Enqueue(ctx, pipelines.Request{DeliveryID: fmt.Sprintf("worker-%d", i), Repo: "acme/app", CloneURL: "https://github.com/acme/app.git",
			Ref: fmt.Sprintf("refs/heads/b%d", i), Commit: fmt.Sprintf("%040x", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.RunID)
	}
	p := startGantryUntil(t, regexp.MustCompile(`msg="worker started"`), filepath.Join(dir, "worker.log"),
		"worker", "--config", cfg, "--nats-url", url, "--workers", "2", "--test-stages", "record:"+calls+":2:10ms")
	for _, id := range ids {
		deadline := time.Now().Add(60 * time.Second)
		for {
			r, err := q.Get(ctx, id)
			if err == nil && r.State.Final() {
				if r.State != pipelines.StatePassed || len(r.Stages) != 2 {
					t.Fatalf("run %s: %+v", id, r)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run %s not executed by gantry worker\n%s", id, readFile(t, p.logFile))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c, _ := pipelinestest.ReadCalls(calls)
	if len(c) != 10 {
		t.Fatalf("stage calls: %v", c)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("worker exit after SIGTERM: %v\n%s", p.err, readFile(t, p.logFile))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not exit within 30s of SIGTERM")
	}
}
