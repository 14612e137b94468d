package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/auth"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/pipelines"
)

func digest(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestParseTokens(t *testing.T) {
	good := "# comment\n\n" + digest("alpha") + " ci bot\n  " + digest("beta") + "\n"
	tokens, err := api.ParseTokens(good)
	if err != nil || tokens.Len() != 2 {
		t.Fatalf("%v %d", err, tokens.Len())
	}
	for _, tc := range []struct {
		header string
		name   string
		ok     bool
	}{
		{"Bearer alpha", "ci bot", true},
		{"bearer beta", "sha256:" + digest("beta")[7:15], true},
		{"Bearer  alpha ", "ci bot", true},
		{"Bearer gamma", "", false},
		{"Bearer ", "", false},
		{"Basic YWxwaGE6", "", false},
		{"alpha", "", false},
		{"", "", false},
		{"Bearer " + digest("alpha"), "", false}, // the digest itself is not a token
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		p, err := tokens.Authenticate(r)
		if (err == nil) != tc.ok || p.Subject != tc.name {
			t.Errorf("%q: %+v %v", tc.header, p, err)
		}
	}
	for _, bad := range []string{"alpha", "sha256:abc", "sha1:" + digest("x")[7:], "sha256:" + strings.Repeat("zz", 32)} {
		_, err := api.ParseTokens(bad + "\n")
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "alpha") {
			t.Errorf("error echoes a possible plain token: %v", err)
		}
	}
	empty, err := api.LoadTokens("")
	if err != nil || empty.Len() != 0 {
		t.Fatal("empty path")
	}
	if _, err := empty.Authenticate(httptest.NewRequest("GET", "/", nil)); err == nil {
		t.Fatal("no tokens file accepted a request")
	}
}

func FuzzParseTokens(f *testing.F) {
	f.Add(digest("a") + " name\n# c\n")
	f.Add("sha256:\n")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := api.ParseTokens(s)
		if err == nil {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Authorization", "Bearer "+s)
			_, _ = tok.Authenticate(r)
		}
	})
}

type rig struct {
	srv   *httptest.Server
	queue *pipelines.Queue
}

func newRig(t *testing.T, extra ...auth.Authenticator) *rig {
	return newRigAudit(t, nil, extra...)
}

func newRigAudit(t *testing.T, rec *audit.Recorder, extra ...auth.Authenticator) *rig {
	testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := pipelines.Open(ctx, pipelines.Options{Connection: pipelines.Connection{DataDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte(digest("secret-token")+" alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := api.LoadTokens(file)
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.New(api.Options{Store: q, Auth: append(auth.Chain{tokens}, extra...), Audit: rec})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &rig{srv: srv, queue: q}
}

func (r *rig) do(t *testing.T, method, path, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+path, nil)
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
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	return resp.StatusCode, b
}

func TestAPI(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	var ids []string
	for i, repo := range []string{"acme/a", "acme/b", "acme/a"} {
		e, err := r.queue.Enqueue(ctx, pipelines.Request{DeliveryID: "api-" + repo + string(rune('0'+i)), Repo: repo,
			// Each a different commit: the same push twice is one run (the push guard).
			Ref: "refs/heads/main", Commit: strings.Repeat(string(rune('a'+i)), 40)})
		if err != nil {
			t.Fatal(err)
		}
		// No pause between them: ids of one process sort by creation
		// even within a millisecond (pipelines.NewRunID).
		ids = append(ids, e.RunID)
	}
	const tok = "secret-token"
	tests := []struct {
		method, path, token string
		code                int
		contains            string
	}{
		{"GET", "/api/v1/runs", "", 401, "bearer token"},
		{"GET", "/api/v1/runs", "wrong", 401, "not valid"},
		{"GET", "/api/v1/runs/" + ids[0], "", 401, ""},
		{"POST", "/api/v1/runs/" + ids[0] + "/cancel", "", 401, ""},
		{"GET", "/api/v1/runs", tok, 200, ids[2]},
		{"GET", "/api/v1/runs?repo=acme/b", tok, 200, ids[1]},
		{"GET", "/api/v1/runs?state=bogus", tok, 400, "state must be"},
		{"GET", "/api/v1/runs?limit=0", tok, 400, "limit"},
		{"GET", "/api/v1/runs?limit=abc", tok, 400, "limit"},
		{"GET", "/api/v1/runs?before=../x", tok, 400, "before"},
		{"GET", "/api/v1/runs/" + ids[1], tok, 200, `"repo": "acme/b"`},
		{"GET", "/api/v1/runs/00000000000000000000", tok, 404, "no such run"},
		{"GET", "/api/v1/runs/..%2F..%2Fetc", tok, 404, ""},
		{"GET", "/api/v1/runs/" + ids[1] + "/logs", tok, 200, ""},
		{"GET", "/api/v1/runs/" + ids[1] + "/logs?stage=nope", tok, 404, "no stage"},
		{"POST", "/api/v1/runs/" + ids[1] + "/cancel", tok, 200, `"state": "cancelled"`},
		{"POST", "/api/v1/runs/" + ids[1] + "/cancel", tok, 409, "already finished"},
		{"POST", "/api/v1/runs/00000000000000000000/cancel", tok, 404, ""},
		{"DELETE", "/api/v1/runs/" + ids[1], tok, 405, ""},
		{"GET", "/api/v1/nothing", tok, 404, ""},
	}
	for _, tc := range tests {
		code, body := r.do(t, tc.method, tc.path, tc.token)
		if code != tc.code || !strings.Contains(string(body), tc.contains) {
			t.Errorf("%s %s (token %q): %d %s, want %d containing %q", tc.method, tc.path, tc.token, code, body, tc.code, tc.contains)
		}
	}
	run, _ := r.queue.Get(ctx, ids[1])
	if run.Message != "cancelled via the API by alice" {
		t.Fatalf("cancel reason: %q", run.Message)
	}
	// Pagination: limit 1 walks all three, newest first.
	var got []string
	cursor := ""
	for range 5 {
		code, body := r.do(t, "GET", "/api/v1/runs?limit=1&before="+cursor, tok)
		var page pipelines.Page
		if code != 200 || json.Unmarshal(body, &page) != nil {
			t.Fatalf("%d %s", code, body)
		}
		for _, run := range page.Runs {
			got = append(got, run.ID)
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	if strings.Join(got, ",") != strings.Join([]string{ids[2], ids[1], ids[0]}, ",") {
		t.Fatalf("pages: %v", got)
	}
	_, body := r.do(t, "GET", "/api/v1/runs?state=cancelled", tok)
	var page pipelines.Page
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatalf("state filter: %v: %s", err, body)
	}
	if len(page.Runs) != 1 || page.Runs[0].ID != ids[1] {
		t.Fatalf("state filter: %s", body)
	}
}

// scoped authenticates "Bearer scope-<scope>" as a principal holding only
// that scope.
var scoped = auth.AuthenticatorFunc(func(r *http.Request) (auth.Principal, error) {
	tok, ok := auth.BearerToken(r)
	s, found := strings.CutPrefix(tok, "scope-")
	if !ok || !found {
		return auth.Principal{}, auth.ErrNoCredential
	}
	return auth.Principal{Subject: "bot-" + s, Scopes: []auth.Scope{auth.Scope(s)}, Method: "test"}, nil
})

func TestRouteScopes(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := audit.OpenFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	r := newRigAudit(t, &audit.Recorder{Sink: sink}, scoped)
	e, err := r.queue.Enqueue(context.Background(), pipelines.Request{DeliveryID: "scopes-" + t.Name(), Repo: "acme/scopes",
		Ref: "refs/heads/main", Commit: strings.Repeat("b", 40)})
	if err != nil {
		t.Fatal(err)
	}
	routes := api.Routes()
	if len(routes) < 4 {
		t.Fatalf("routes: %v", routes)
	}
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt.Pattern, " ")
		path = strings.ReplaceAll(path, "{id}", e.RunID)
		for _, held := range auth.AllScopes {
			// Cancel last: a cancelled run answers 409, still not 403.
			code, body := r.do(t, method, path, "scope-"+string(held))
			allowed := auth.Principal{Scopes: []auth.Scope{held}}.Allows(rt.Scope)
			if allowed && (code == 401 || code == 403) {
				t.Errorf("%s with %s: %d %s", rt.Pattern, held, code, body)
			}
			if !allowed && (code != 403 || !strings.Contains(string(body), string(rt.Scope))) {
				t.Errorf("%s with %s: %d %s, want 403 naming %s", rt.Pattern, held, code, body, rt.Scope)
			}
		}
		if code, _ := r.do(t, method, path, ""); code != 401 {
			t.Errorf("%s without a token: %d", rt.Pattern, code)
		}
		if code, _ := r.do(t, method, path, "scope-bogus"); code != 403 {
			t.Errorf("%s with an unknown scope: %d", rt.Pattern, code)
		}
	}
	run, _ := r.queue.Get(context.Background(), e.RunID)
	if run.State != pipelines.StateCancelled || !strings.Contains(run.Message, "bot-runs:write") {
		t.Fatalf("cancel by the runs:write principal: %s %q", run.State, run.Message)
	}
	// The audit log has the cancel (ok) and the later attempt (denied:
	// already final); refused-by-scope requests changed nothing.
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("audit log:\n%s", b)
	}
	var ok, denied audit.Event
	for i, e := range []*audit.Event{&ok, &denied} {
		if err := json.Unmarshal([]byte(lines[i]), e); err != nil {
			t.Fatalf("audit record %d: %v: %s", i, err, lines[i])
		}
	}
	if ok.Action != audit.ActionRunCancel || ok.Actor != "bot-runs:write" || ok.Target != e.RunID || ok.Outcome != "ok" || ok.Details["repo"] != "acme/scopes" {
		t.Fatalf("cancel record %s", lines[0])
	}
	if denied.Actor != "bot-admin" || denied.Outcome != "denied" {
		t.Fatalf("second cancel record %s", lines[1])
	}
}
