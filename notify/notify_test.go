package notify

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/config"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// fastConfig retries quickly so tests stay short.
func fastConfig() config.Notify {
	c := config.DefaultNotify()
	c.Backoff = time.Millisecond
	c.MaxBackoff = 5 * time.Millisecond
	c.Timeout = 5 * time.Second
	return c
}

func appKey(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, "app.pem", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})))
	return k, p
}

func findings(n int) []Finding {
	var out []Finding
	sev := []string{"LOW", "CRITICAL", "MEDIUM", "HIGH"}
	for i := range n {
		out = append(out, Finding{ID: fmt.Sprintf("CVE-2099-%04d", i), Package: "openssl", Installed: "3.0.1",
			Fixed: "3.0.2", Severity: sev[i%4], Title: "buffer overflow " + strings.Repeat("x", i%7)})
	}
	return out
}

func failedRun(nFindings int) Run {
	return Run{
		ID: "run-17", Repo: "acme/functions", Commit: sha, Ref: "refs/heads/main", URL: "http://127.0.0.1:8080/runs/run-17",
		Verdict: VerdictFailure,
		Functions: []Function{
			{Name: "hello", Verdict: VerdictSuccess, Image: "r/hello@sha256:" + strings.Repeat("a", 64),
				Stages: []Stage{{Name: "build", Status: "success", Duration: time.Second}, {Name: "deploy", Status: "success"}}},
			{Name: "vuln", Verdict: VerdictFailure, Dockerfile: "functions/vuln/Dockerfile",
				Stages:   []Stage{{Name: "build", Status: "success"}, {Name: "scan", Status: "failure", Error: fmt.Sprintf("%d findings fail the gate", nFindings)}},
				Findings: findings(nFindings)},
		},
	}
}

func TestGitHubAppStatusesAndCheckRunWithAnnotationBatches(t *testing.T) {
	key, keyFile := appKey(t)
	gh := newFakeGitHub(t, 123, &key.PublicKey)
	cfg := fastConfig()
	cfg.GitHub.APIURL = gh.URL()
	cfg.GitHub.AppID = 123
	cfg.GitHub.PrivateKeyFile = keyFile
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run := failedRun(120)
	rep := n.Notify(context.Background(), run)
	if f := rep.Failed(); len(f) != 0 {
		t.Fatalf("failed deliveries: %+v", f)
	}
	statuses, creates, updates, exchanges := gh.snapshot()

	// One installation token, looked up and exchanged once, scoped to
	// the two permissions notify needs.
	if exchanges != 1 || gh.lookups != 1 {
		t.Errorf("token exchanges %d, installation lookups %d; want 1 and 1 (cached)", exchanges, gh.lookups)
	}
	if p := gh.permissions[0]; len(p) != 2 || p["checks"] != "write" || p["statuses"] != "write" {
		t.Errorf("requested permissions %v, want only checks:write and statuses:write", p)
	}

	want := map[string]string{"gantry/hello": "success", "gantry/vuln": "failure"}
	if len(statuses) != 2 {
		t.Fatalf("statuses %v", statuses)
	}
	for _, s := range statuses {
		if want[s["context"].(string)] != s["state"] || s["sha"] != sha || s["target_url"] != run.URL {
			t.Errorf("status %v", s)
		}
		if s["context"] == "gantry/vuln" && s["description"] != "scan: 120 findings fail the gate" {
			t.Errorf("description %q", s["description"])
		}
	}

	// 120 annotations: create with 50 (in progress), update 50, update 20 + conclusion.
	if len(creates) != 1 || len(updates) != 2 {
		t.Fatalf("check run requests: %d creates, %d updates; want 1 and 2", len(creates), len(updates))
	}
	c := creates[0]
	if c["name"] != "gantry" || c["head_sha"] != sha || c["status"] != "in_progress" || c["external_id"] != "run-17" || c["details_url"] != run.URL {
		t.Errorf("create %v", c)
	}
	last := updates[1]
	if last["status"] != "completed" || last["conclusion"] != "failure" || last["completed_at"] == nil {
		t.Errorf("final update %v", last)
	}
	seen := map[string]bool{}
	var batches []int
	for _, req := range append(creates, updates...) {
		anns := req["output"].(map[string]any)["annotations"].([]any)
		batches = append(batches, len(anns))
		for _, a := range anns {
			am := a.(map[string]any)
			seen[am["title"].(string)] = true
			if am["path"] != "functions/vuln/Dockerfile" {
				t.Errorf("annotation path %v", am["path"])
			}
		}
	}
	if fmt.Sprint(batches) != "[50 50 20]" || len(seen) != 120 {
		t.Errorf("annotation batches %v, %d distinct; want [50 50 20], 120", batches, len(seen))
	}
	first := creates[0]["output"].(map[string]any)["annotations"].([]any)[0].(map[string]any)
	if first["annotation_level"] != "failure" || !strings.HasPrefix(first["title"].(string), "CRITICAL") ||
		!strings.Contains(first["message"].(string), "fixed in 3.0.2") {
		t.Errorf("the worst finding must come first, as a failure, with its fix: %v", first)
	}
	summary := c["output"].(map[string]any)["summary"].(string)
	for _, s := range []string{"| vuln | failure |", "CVE-2099-0001", "3.0.2", run.URL} {
		if !strings.Contains(summary, s) {
			t.Errorf("summary lacks %q", s)
		}
	}

	// A second run reuses the cached token.
	n.Notify(context.Background(), run)
	if _, _, _, ex := gh.snapshot(); ex != 1 {
		t.Errorf("token exchanged again (%d) while still valid", ex)
	}
}

func TestGitHubAppTokenRenewedNearExpiry(t *testing.T) {
	key, keyFile := appKey(t)
	gh := newFakeGitHub(t, 9, &key.PublicKey)
	gh.ttl = 2 * time.Minute // inside the 5-minute margin: never reused
	cfg := fastConfig()
	cfg.GitHub.APIURL = gh.URL()
	cfg.GitHub.AppID, cfg.GitHub.InstallationID, cfg.GitHub.PrivateKeyFile = 9, gh.instID, keyFile
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run := failedRun(1)
	run.Verdict = VerdictPending // statuses only
	rep := n.Notify(context.Background(), run)
	if len(rep.Failed()) != 0 || len(rep.Deliveries) != 2 {
		t.Fatalf("report %+v", rep)
	}
	if _, _, _, ex := gh.snapshot(); ex != 2 || gh.lookups != 0 {
		t.Errorf("exchanges %d (want 2: the token is too close to expiry to reuse), lookups %d (want 0: id configured)", ex, gh.lookups)
	}
}

func TestGitHubAppWrongKeyIsRefusedAndRecorded(t *testing.T) {
	key, _ := appKey(t)
	_, otherKeyFile := appKey(t)
	gh := newFakeGitHub(t, 5, &key.PublicKey)
	cfg := fastConfig()
	cfg.GitHub.APIURL = gh.URL()
	cfg.GitHub.AppID, cfg.GitHub.InstallationID, cfg.GitHub.PrivateKeyFile = 5, gh.instID, otherKeyFile
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep := n.Notify(context.Background(), failedRun(3))
	if len(rep.Failed()) != 3 {
		t.Fatalf("want 2 statuses + check run failed, got %+v", rep)
	}
	for _, d := range rep.Failed() {
		if d.Attempts != 1 || !strings.Contains(d.Error, "HTTP 401") || !strings.Contains(d.Error, "installation token") {
			t.Errorf("delivery %+v: want one attempt (401 is permanent) and a clear error", d)
		}
	}
}

func TestGitHubTokenFileStatusesOnly(t *testing.T) {
	gh := newFakeGitHub(t, 0, nil)
	gh.token = "ghp_personaltoken_abcdefghijklmnop"
	cfg := fastConfig()
	cfg.GitHub.APIURL = gh.URL()
	cfg.GitHub.TokenFile = writeFile(t, "token", gh.token+"\n")
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep := n.Notify(context.Background(), failedRun(2))
	statuses, creates, _, _ := gh.snapshot()
	if len(rep.Failed()) != 0 || len(statuses) != 2 || len(creates) != 0 {
		t.Fatalf("want 2 statuses and no check run (needs an App), got report %+v, %d statuses, %d check runs", rep, len(statuses), len(creates))
	}
}

func TestRetriesAndRecordedFailures(t *testing.T) {
	tests := []struct {
		name     string
		fail     []int
		ok       bool
		attempts int
		errHas   string
	}{
		{"502 twice then ok", []int{502, 502}, true, 3, ""},
		{"429 honoured then ok", []int{429}, true, 2, ""},
		{"always 503", []int{503, 503, 503, 503, 503}, false, 4, "after 4 attempts"},
		{"404 is permanent", []int{404}, false, 1, "HTTP 404"},
		{"422 is permanent", []int{422}, false, 1, "HTTP 422"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gh := newFakeGitHub(t, 0, nil)
			cfg := fastConfig()
			cfg.GitHub.APIURL = gh.URL()
			cfg.GitHub.TokenFile = writeFile(t, "token", gh.token)
			n, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			gh.failNext = tc.fail
			run := failedRun(0)
			run.Functions = run.Functions[:1]
			rep := n.Notify(context.Background(), run)
			d := rep.Deliveries[0]
			if d.OK != tc.ok || d.Attempts != tc.attempts || !strings.Contains(d.Error, tc.errHas) {
				t.Fatalf("delivery %+v; want ok=%v attempts=%d error containing %q", d, tc.ok, tc.attempts, tc.errHas)
			}
			if strings.Contains(d.Error, gh.token) {
				t.Fatal("the token leaked into the recorded error")
			}
		})
	}
}

func TestCheckRunSummaryWithinGitHubCap(t *testing.T) {
	key, keyFile := appKey(t)
	gh := newFakeGitHub(t, 1, &key.PublicKey)
	cfg := fastConfig()
	cfg.GitHub.APIURL = gh.URL()
	cfg.GitHub.AppID, cfg.GitHub.PrivateKeyFile = 1, keyFile
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run := failedRun(0)
	for i := range 2000 { // ~2000 rows of ~200 bytes: far beyond 65535
		run.Functions[1].Findings = append(run.Functions[1].Findings, Finding{ID: fmt.Sprintf("CVE-2099-%05d", i),
			Package: "pkg|with|pipes", Installed: "1", Fixed: "2", Severity: "HIGH", Title: strings.Repeat("é", 150)})
	}
	rep := n.Notify(context.Background(), run)
	if f := rep.Failed(); len(f) != 0 {
		t.Fatalf("GitHub refused: %+v", f)
	}
	_, creates, updates, _ := gh.snapshot()
	summary := creates[0]["output"].(map[string]any)["summary"].(string)
	if len(summary) > maxSummary || !strings.Contains(summary, "do not fit GitHub's summary limit") || !strings.Contains(summary, run.URL) {
		t.Errorf("summary of %d bytes; want ≤ %d with a pointer to the full report", len(summary), maxSummary)
	}
	if strings.Contains(summary, "pkg|with") {
		t.Error("a | inside a cell was not escaped")
	}
	if got := 1 + len(updates); got != maxAnnotations/maxAnnotationsPerRequest {
		t.Errorf("%d check run requests for 2000 findings; want %d (annotations capped at %d)", got, maxAnnotations/maxAnnotationsPerRequest, maxAnnotations)
	}
}

// sink is a local HTTP receiver recording bodies and headers.
type sink struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	heads  []http.Header
	codes  []int // answers, in order; then 200
}

func newSink(t *testing.T, codes ...int) *sink {
	s := &sink{codes: codes}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		s.mu.Lock()
		s.bodies = append(s.bodies, b)
		s.heads = append(s.heads, r.Header.Clone())
		code := 200
		if len(s.codes) > 0 {
			code, s.codes = s.codes[0], s.codes[1:]
		}
		s.mu.Unlock()
		w.WriteHeader(code)
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func TestSlackMessageAndWhen(t *testing.T) {
	s := newSink(t, 500)
	secretURL := s.srv.URL + "/services/T000/B000/XXXXSECRETXXXX"
	cfg := fastConfig()
	cfg.Slack.WebhookURLFile = writeFile(t, "slack", secretURL)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run := failedRun(7)
	run.Functions[1].Findings[0].Title = "<https://evil.example|click here> & <!channel>"
	rep := n.Notify(context.Background(), run)
	if len(rep.Deliveries) != 1 || !rep.Deliveries[0].OK || rep.Deliveries[0].Attempts != 2 {
		t.Fatalf("report %+v: want one delivery, retried once after the 500", rep)
	}
	var msg slackMessage
	if err := json.Unmarshal(s.bodies[1], &msg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CVE-2099-0001", "fixed in 3.0.2", "<" + run.URL + "|run run-17>", "`acme/functions`", "`vuln`: failure: scan: 7 findings fail the gate"} {
		if !strings.Contains(msg.Text, want) {
			t.Errorf("message lacks %q:\n%s", want, msg.Text)
		}
	}
	if strings.Contains(msg.Text, "<https://evil") || strings.Contains(msg.Text, "<!channel>") {
		t.Errorf("untrusted title became Slack markup:\n%s", msg.Text)
	}
	if strings.Index(msg.Text, "CRITICAL") > strings.Index(msg.Text, "HIGH") {
		t.Errorf("findings not worst first:\n%s", msg.Text)
	}
	if got := strings.Count(msg.Text, "CVE-2099-"); got != cfg.TopFindings {
		t.Errorf("%d findings listed, want topFindings=%d", got, cfg.TopFindings)
	}

	// when: failure skips a successful run; always sends it.
	ok := failedRun(0)
	ok.Verdict = VerdictSuccess
	if rep := n.Notify(context.Background(), ok); len(rep.Deliveries) != 0 {
		t.Errorf("success notified with when=failure: %+v", rep)
	}
	cfg.When = "always"
	na, _ := New(cfg)
	if rep := na.Notify(context.Background(), ok); len(rep.Deliveries) != 1 || !rep.Deliveries[0].OK {
		t.Errorf("success not notified with when=always: %+v", rep)
	}

	// A receiver that is down: recorded, URL (the secret) not in the error.
	s.srv.Close()
	rep = n.Notify(context.Background(), run)
	d := rep.Deliveries[0]
	if d.OK || d.Attempts != cfg.Attempts || strings.Contains(d.Error, "XXXXSECRETXXXX") || !strings.Contains(d.Error, "Slack webhook") {
		t.Errorf("delivery to a closed receiver: %+v", d)
	}
}

func TestCloudEventSignedStructuredJSON(t *testing.T) {
	s := newSink(t)
	key := "0123456789abcdef0123456789abcdef"
	cfg := fastConfig()
	cfg.CloudEvents = config.NotifyCloudEvents{URL: s.srv.URL + "/events", SecretFile: writeFile(t, "key", key+"\n"), Source: "https://gantry.example/ci"}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	run := failedRun(9)
	rep := n.Notify(context.Background(), run)
	if len(rep.Failed()) != 0 || len(s.bodies) != 1 {
		t.Fatalf("report %+v", rep)
	}
	body, h := s.bodies[0], s.heads[0]
	if h.Get("Content-Type") != CloudEventsContentType {
		t.Errorf("content type %q", h.Get("Content-Type"))
	}
	if err := VerifySignature([]byte(key), body, h.Get(SignatureHeader)); err != nil {
		t.Fatalf("signature: %v", err)
	}
	tampered := append([]byte(nil), body...)
	tampered[len(tampered)/2] ^= 1
	if err := VerifySignature([]byte(key), tampered, h.Get(SignatureHeader)); err == nil {
		t.Fatal("a tampered body verified")
	}
	if err := VerifySignature([]byte("another key of 32 bytes........"), body, h.Get(SignatureHeader)); err == nil {
		t.Fatal("verified under the wrong key")
	}
	var ev struct {
		SpecVersion, ID, Source, Type, Subject, DataContentType string
		Time                                                    time.Time
		Data                                                    struct {
			Verdict     string
			URL         string
			TopFindings []struct{ ID, Fixed, Severity, Function string }
			Functions   []struct {
				Name     string
				Findings []any
			}
		}
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.SpecVersion != "1.0" || ev.ID != "run-17/failure" || ev.Source != cfg.CloudEvents.Source || ev.Type != "dev.gantry.run.failure" ||
		ev.Subject != "acme/functions@"+sha || ev.DataContentType != "application/json" || ev.Time.IsZero() {
		t.Errorf("envelope %+v", ev)
	}
	if ev.Data.URL != run.URL || len(ev.Data.TopFindings) != cfg.TopFindings || ev.Data.TopFindings[0].Severity != "CRITICAL" ||
		ev.Data.TopFindings[0].Fixed != "3.0.2" || ev.Data.TopFindings[0].Function != "vuln" {
		t.Errorf("data %+v", ev.Data)
	}
	if len(ev.Data.Functions) != 2 || ev.Data.Functions[1].Findings != nil {
		t.Errorf("functions must be listed without their full findings (bounded event): %+v", ev.Data.Functions)
	}
}

func TestAttemptTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	cfg := fastConfig()
	cfg.Timeout = 50 * time.Millisecond
	cfg.Attempts = 2
	cfg.Slack.WebhookURLFile = writeFile(t, "slack", srv.URL+"/hook")
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep := n.Notify(context.Background(), failedRun(1))
	d := rep.Deliveries[0]
	if d.OK || d.Attempts != 2 || !strings.Contains(d.Error, "no answer within notify.timeout") {
		t.Fatalf("delivery %+v", d)
	}
}

func TestNewRefusesBadSecrets(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*config.Notify)
		want   string
	}{
		{"missing slack file", func(c *config.Notify) { c.Slack.WebhookURLFile = "/nonexistent/slack" }, "webhookURLFile"},
		{"slack url over plain http", func(c *config.Notify) {
			c.Slack.WebhookURLFile = writeFile(t, "s", "http://hooks.example.com/x")
		}, "loopback"},
		{"short hmac key", func(c *config.Notify) {
			c.CloudEvents = config.NotifyCloudEvents{URL: "https://sink.example/", SecretFile: writeFile(t, "k", "short"), Source: "g"}
		}, "at least 16 bytes"},
		{"empty token file", func(c *config.Notify) { c.GitHub.TokenFile = writeFile(t, "t", "\n") }, "empty"},
		{"not a key", func(c *config.Notify) {
			c.GitHub.AppID, c.GitHub.PrivateKeyFile = 1, writeFile(t, "k", "-----BEGIN NOTHING-----")
		}, "not an RSA private key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fastConfig()
			tc.mutate(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestVerifySignature(t *testing.T) {
	key, body := []byte("k"), []byte("Hello, World!")
	good := Sign(key, body)
	tests := []struct {
		header string
		ok     bool
	}{
		{good, true},
		{" " + good + " ", true},
		{strings.ToUpper(good[:7]) + good[7:], false},
		{"sha1=" + good[7:], false},
		{good[:len(good)-2], false},
		{good[:len(good)-1] + "0", good[len(good)-1] == '0'},
		{"sha256=zz" + good[9:], false},
		{"", false},
	}
	for _, tc := range tests {
		if err := VerifySignature(key, body, tc.header); (err == nil) != tc.ok {
			t.Errorf("VerifySignature(%q) = %v, want ok=%v", tc.header, err, tc.ok)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"-1":                            0,
		"0":                             0,
		"999999999":                     0,
		"soon":                          0,
		"Fri, 02 Jan 2026 03:04:15 GMT": 10 * time.Second,
		"Fri, 02 Jan 2026 03:04:00 GMT": 0,
	}
	for in, want := range tests {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestTruncateKeepsUTF8(t *testing.T) {
	for _, s := range []string{strings.Repeat("é", 100), strings.Repeat("a", 300), "日本語のテキスト"} {
		for max := 0; max < 30; max++ {
			got := truncate(s, max)
			if len(got) > max && len(s) > max {
				t.Fatalf("truncate(%q, %d) = %d bytes", s, max, len(got))
			}
			if !strings.HasPrefix(s, strings.TrimSuffix(got, "…")) {
				t.Fatalf("truncate(%q, %d) = %q: not a prefix", s, max, got)
			}
		}
	}
}

func FuzzVerifySignature(f *testing.F) {
	f.Add([]byte("key"), []byte("body"), "sha256=00")
	f.Add([]byte("k"), []byte("Hello, World!"), Sign([]byte("k"), []byte("Hello, World!")))
	f.Fuzz(func(t *testing.T, key, body []byte, header string) {
		err := VerifySignature(key, body, header)
		if err == nil && header != Sign(key, body) && strings.TrimSpace(header) != Sign(key, body) {
			// Hex is case-insensitive; anything else verifying is a forgery.
			if !strings.EqualFold(strings.TrimSpace(header), Sign(key, body)) {
				t.Fatalf("header %q verified for a different MAC", header)
			}
		}
		if VerifySignature(key, body, Sign(key, body)) != nil {
			t.Fatal("own signature did not verify")
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "1", "120", "Fri, 02 Jan 2026 03:04:15 GMT", "-5", "1e9"} {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, v string) {
		if d := parseRetryAfter(v, now); d < 0 || d > 24*time.Hour {
			t.Fatalf("parseRetryAfter(%q) = %s: out of bounds", v, d)
		}
	})
}

// FuzzRender feeds untrusted run content (repo names, titles from scan
// data) through every renderer: no panic, caps kept, Slack markup escaped.
func FuzzRender(f *testing.F) {
	f.Add("acme/x", "fn", "CVE-1", "pkg", "<!here>", "HIGH", "reason|with\npipes")
	f.Fuzz(func(t *testing.T, repo, name, id, pkg, title, sev, reason string) {
		run := Run{ID: id, Repo: repo, Commit: sha, Verdict: VerdictFailure, Functions: []Function{{Name: name, Verdict: VerdictFailure,
			Reason: reason, Findings: []Finding{{ID: id, Package: pkg, Severity: sev, Title: title}}}}}
		if s := checkSummary(run); len(s) > maxSummary {
			t.Fatal("summary over the cap")
		}
		for _, a := range annotations(run) {
			if len(*a.Title) > maxAnnotationTitle || len(*a.Message) > maxAnnotationMessage {
				t.Fatal("annotation over the caps")
			}
		}
		txt := slackText(run, 5)
		if strings.Contains(txt, "<!") {
			t.Fatalf("unescaped Slack control sequence in %q", txt)
		}
	})
}
