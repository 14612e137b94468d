package dashboard_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/auth"
	"github.com/gantry-dev/gantry/dashboard"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/tokens"
)

// chromium returns Debian's chromium, which hack/testenv installs with the
// other Debian packages the tests need.
func chromium(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run `hack/testenv up` (it installs Debian's chromium)")
	}
	return p
}

// gate is a stage that logs a line, then waits for release (or, with no
// release channel, for the run to be cancelled).
type gate struct {
	name    string
	line    string
	release chan struct{}
}

func (g *gate) Name() string { return g.name }
func (g *gate) Run(ctx context.Context, _ pipelines.Run, log io.Writer) (map[string]string, error) {
	_, _ = io.WriteString(log, g.line+"\n")
	if g.release == nil {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	select {
	case <-g.release:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type rig struct {
	srv               *httptest.Server
	queue             *pipelines.Queue
	reader, writer    string
	auditPath         string
	releaseLint       chan struct{}
	browser           context.Context
	screenshotDir     string
	releaseLintClosed sync.Once
}

func newRig(t *testing.T) *rig {
	testenv.Require(t)
	exe := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	_, sealKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	sealer := pipelines.NewSealer(sealKey)
	q, err := pipelines.Open(ctx, pipelines.Options{Connection: pipelines.Connection{DataDir: filepath.Join(dir, "data")}, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	store, err := tokens.Open(filepath.Join(dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{queue: q, auditPath: filepath.Join(dir, "audit.jsonl"), releaseLint: make(chan struct{})}
	if r.reader, _, err = store.Create(tokens.CreateOptions{Name: "viewer", Scopes: []auth.Scope{auth.ScopeRunsRead}}); err != nil {
		t.Fatal(err)
	}
	if r.writer, _, err = store.Create(tokens.CreateOptions{Name: "operator", Scopes: []auth.Scope{auth.ScopeRunsWrite}}); err != nil {
		t.Fatal(err)
	}
	sink, err := audit.OpenFile(r.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	d, err := dashboard.New(dashboard.Options{Store: q, Auth: auth.Chain{store}, Audit: &audit.Recorder{Sink: sink},
		InsecureCookies: true, PollInterval: 100 * time.Millisecond,
		CommitURL: "https://github.com/{repo}/commit/{commit}"})
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(d)
	t.Cleanup(r.srv.Close)

	wctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = q.Work(wctx, pipelines.WorkerOptions{Concurrency: 2, Origin: &pipelines.OriginPolicy{
			Keys: []ed25519.PublicKey{sealer.Public()}, Allowed: func(string, string) string { return "" },
		}, Stages: []pipelines.Stage{
			&gate{name: "lint", line: "lint: Dockerfile OK (0 findings)", release: r.releaseLint},
			&gate{name: "build", line: "build: solving dockerfile.v0"},
		}})
	}()
	t.Cleanup(func() { r.release(); stop(); <-done })

	// The machine's network is closed: the background-networking flags
	// stop Chromium from trying to reach Google at start.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-quic", true),
		chromedp.UserDataDir(filepath.Join(dir, "chromium")), chromedp.WindowSize(1280, 900),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(acancel)
	var copts []chromedp.ContextOption
	if os.Getenv("GANTRY_CDP_DEBUG") != "" {
		copts = append(copts, chromedp.WithDebugf(t.Logf))
	}
	bctx, bcancel := chromedp.NewContext(actx, copts...)
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	r.browser = bctx
	r.screenshotDir = os.Getenv("GANTRY_SCREENSHOT_DIR")
	return r
}

func (r *rig) release() { r.releaseLintClosed.Do(func() { close(r.releaseLint) }) }

// do runs browser actions with a deadline.
func (r *rig) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(r.browser, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one browser action that returns a value.
func get[T any](t *testing.T, r *rig, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(r.browser, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func poll(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second))(ctx, tg)
		return err
	})
}

func (r *rig) screenshot(t *testing.T, name string) {
	if r.screenshotDir == "" {
		return
	}
	// Quality 100 makes chromedp capture PNG (anything lower is JPEG).
	png := get(t, r, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(r.screenshotDir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) login(t *testing.T, token string) {
	t.Helper()
	r.do(t, "log in",
		chromedp.Navigate(r.srv.URL+"/ui/login"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#runs")),
	)
}

func TestBrowser(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	e, err := r.queue.Enqueue(ctx, pipelines.Request{DeliveryID: "ui-" + t.Name(), Repo: "acme/hello",
		CloneURL: "https://github.com/acme/hello.git", Ref: "refs/heads/main", Commit: strings.Repeat("c0ffee", 6) + "beef",
		Pusher: "octocat", Title: "Make hello faster"})
	if err != nil {
		t.Fatal(err)
	}
	// The worker picks the run up and waits in the lint stage.
	deadline := time.Now().Add(20 * time.Second)
	for {
		run, _ := r.queue.Get(ctx, e.RunID)
		if run != nil && run.State == pipelines.StateRunning && run.Stage("lint") != nil && run.Stage("lint").State == pipelines.StateRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run did not start: %+v", run)
		}
		time.Sleep(50 * time.Millisecond)
	}

	t.Run("unauthenticated visit is refused", func(t *testing.T) {
		r.do(t, "visit", chromedp.Navigate(r.srv.URL+"/ui/runs/"+e.RunID), chromedp.WaitVisible(chromedp.CSS("#token")))
		loc := get(t, r, "location", chromedp.Location())
		if !strings.Contains(loc, "/ui/login") {
			t.Fatalf("landed on %s", loc)
		}
		body := get(t, r, "body", chromedp.Text(chromedp.CSS("body")))
		if strings.Contains(body, "acme/hello") || strings.Contains(body, e.RunID) {
			t.Fatalf("login page shows run data: %s", body)
		}
		r.do(t, "bad token", chromedp.SendKeys(chromedp.CSS("#token"), "gantry_nope"), chromedp.Click(chromedp.CSS("#login")),
			chromedp.WaitVisible(chromedp.CSS("#login-error")))
	})

	t.Run("list renders runs", func(t *testing.T) {
		r.login(t, r.reader)
		table := get(t, r, "runs table", chromedp.Text(chromedp.CSS("#runs")))
		user := get(t, r, "user", chromedp.Text(chromedp.CSS("#user")))
		for _, want := range []string{e.RunID, "acme/hello", "c0ffeec0ffee", "octocat", "running", "lint", "build"} {
			if !strings.Contains(table, want) {
				t.Errorf("runs table lacks %q:\n%s", want, table)
			}
		}
		if !strings.Contains(user, "viewer") {
			t.Errorf("user %q", user)
		}
		r.screenshot(t, "dashboard-runs.png")
	})

	t.Run("live log streams", func(t *testing.T) {
		r.do(t, "open run", chromedp.Navigate(r.srv.URL+"/ui/runs/"+e.RunID), chromedp.WaitVisible(chromedp.CSS("#log-lint")))
		lint := get(t, r, "lint log", chromedp.TextContent(chromedp.CSS("#log-lint")))
		href := get(t, r, "commit link", chromedp.AttributeValue(chromedp.CSS("#commit-link"), "href")).Value
		if strings.Contains(lint, "Dockerfile OK") {
			t.Fatalf("lint log shown before the stage ended: %q", lint)
		}
		if href != "https://github.com/acme/hello/commit/"+strings.Repeat("c0ffee", 6)+"beef" {
			t.Fatalf("commit link %q", href)
		}
		// Readers get no cancel button.
		n := get(t, r, "cancel buttons", chromedp.Evaluate[int](`document.querySelectorAll("#cancel").length`))
		if n != 0 {
			t.Fatal("a runs:read session sees the cancel button")
		}
		r.release() // lint passes; its log reaches the open page over SSE
		r.do(t, "log arrives",
			poll(`document.getElementById("log-lint").textContent.includes("Dockerfile OK")`),
			poll(`document.getElementById("stage-state-lint").textContent === "passed"`),
			poll(`document.getElementById("stage-state-build").textContent === "running"`),
		)
		r.screenshot(t, "dashboard-run-live.png")
	})

	t.Run("cancel works", func(t *testing.T) {
		r.do(t, "log out", chromedp.Click(chromedp.CSS(`header button`)), chromedp.WaitVisible(chromedp.CSS("#token")))
		r.login(t, r.writer)
		r.do(t, "cancel",
			chromedp.Navigate(r.srv.URL+"/ui/runs/"+e.RunID),
			chromedp.WaitVisible(chromedp.CSS("#cancel")),
			chromedp.Click(chromedp.CSS("#cancel")),
		)
		// The post redirects to the run page, whose stream then ends and
		// reloads it: read the state once the navigations settle.
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(r.browser, 2*time.Second)
			state, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#run-state")))
			cancel()
			if err == nil && state == "cancelled" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run state on the page: %q %v", state, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		run, err := r.queue.Get(ctx, e.RunID)
		if err != nil || run.State != pipelines.StateCancelled || !strings.Contains(run.Message, "operator") {
			t.Fatalf("run after cancel: %+v %v", run, err)
		}
		r.screenshot(t, "dashboard-run-cancelled.png")
		b, _ := os.ReadFile(r.auditPath)
		if !strings.Contains(string(b), `"action":"run.cancel","actor":"operator"`) || strings.Contains(string(b), r.writer) {
			t.Fatalf("audit log:\n%s", b)
		}
	})

	t.Run("CSRF and headers", func(t *testing.T) {
		// The session cookie is HttpOnly: page scripts cannot read it.
		if c := get(t, r, "document.cookie", chromedp.Evaluate[string](`document.cookie`)); strings.Contains(c, "gantry_session") {
			t.Fatalf("session cookie readable by scripts: %q", c)
		}
		// A session of our own, to forge requests with.
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noRedirect.PostForm(r.srv.URL+"/ui/login", url.Values{"token": {r.writer}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var session string
		for _, c := range resp.Cookies() {
			if c.Name == "gantry_session" {
				session = c.Value
				if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
					t.Errorf("cookie flags: %+v", c)
				}
			}
		}
		if resp.StatusCode != http.StatusSeeOther || session == "" {
			t.Fatalf("login: %d %v", resp.StatusCode, resp.Cookies())
		}
		// A cross-origin login form post is refused.
		req, _ := http.NewRequest("POST", r.srv.URL+"/ui/login", strings.NewReader(url.Values{"token": {r.writer}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "https://evil.example")
		if resp, err := noRedirect.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-origin login: %v %v", resp, err)
		}
		e2, err := r.queue.Enqueue(ctx, pipelines.Request{DeliveryID: "ui2-" + t.Name(), Repo: "acme/other", CloneURL: "https://github.com/acme/other.git",
			Ref: "refs/heads/main", Commit: strings.Repeat("d", 40)})
		if err != nil {
			t.Fatal(err)
		}
		post := func(form url.Values, origin string) int {
			req, _ := http.NewRequest("POST", r.srv.URL+"/ui/runs/"+e2.RunID+"/cancel", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.AddCookie(&http.Cookie{Name: "gantry_session", Value: session})
			if origin != "" {
				req.Header.Set("Origin", origin)
			}
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		for _, tc := range []struct {
			name   string
			form   url.Values
			origin string
		}{
			{"no csrf token", url.Values{}, ""},
			{"wrong csrf token", url.Values{"csrf": {"forged"}}, ""},
			{"cross-origin", url.Values{"csrf": {"forged"}}, "https://evil.example"},
		} {
			if code := post(tc.form, tc.origin); code != http.StatusForbidden {
				t.Errorf("%s: %d, want 403", tc.name, code)
			}
		}
		if run, _ := r.queue.Get(ctx, e2.RunID); run.State.Final() {
			t.Fatalf("a forged request cancelled the run: %s", run.Message)
		}
		resp, err = http.Get(r.srv.URL + "/ui/runs/" + e2.RunID + "/events")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("events without auth: %d", resp.StatusCode)
		}
		resp, err = http.Get(r.srv.URL + "/ui/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if csp := resp.Header.Get("Content-Security-Policy"); csp != dashboard.CSP || strings.Contains(csp, "unsafe-inline") {
			t.Fatalf("CSP %q", csp)
		}
		// Revoking the token ends the browser's session at once.
		store, _ := tokens.Open(filepath.Join(filepath.Dir(r.auditPath), "tokens.json"))
		if _, err := store.Revoke("operator"); err != nil {
			t.Fatal(err)
		}
		r.do(t, "after revoke", chromedp.Navigate(r.srv.URL+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#token")))
		loc := get(t, r, "location", chromedp.Location())
		if !strings.Contains(loc, "/ui/login") {
			t.Fatalf("revoked session still served %s", loc)
		}
	})
	var lines []audit.Event
	b, _ := os.ReadFile(r.auditPath)
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev audit.Event
		if json.Unmarshal([]byte(l), &ev) == nil {
			lines = append(lines, ev)
		}
	}
	if len(lines) < 3 {
		t.Fatalf("audit records: %v", lines)
	}
}
