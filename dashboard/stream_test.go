package dashboard

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/auth"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/tokens"
)

// sseEvent is one Server-Sent Event as a client reads it.
type sseEvent struct{ name, data string }

// stream is an open /events response read in the background: events
// arrive on ch, which is closed when the server ends the response.
type stream struct{ ch chan sseEvent }

// openStream GETs path with the given request decoration and waits for
// its first "run" event (the stream is open and authorised).
func openStream(t *testing.T, base, path string, decorate func(*http.Request)) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	decorate(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	s := &stream{ch: make(chan sseEvent, 64)}
	go func() {
		defer close(s.ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "":
				s.ch <- ev
				ev = sseEvent{}
			}
		}
	}()
	select {
	case ev, ok := <-s.ch:
		if !ok || ev.name != "run" {
			t.Fatalf("first event %+v (open %v), want run", ev, ok)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no first event")
	}
	return s
}

// awaitEnd waits (up to within) for the server to end the stream and
// returns its last event.
func (s *stream) awaitEnd(t *testing.T, within time.Duration) sseEvent {
	t.Helper()
	deadline := time.After(within)
	var last sseEvent
	for {
		select {
		case ev, ok := <-s.ch:
			if !ok {
				return last
			}
			last = ev
		case <-deadline:
			t.Fatalf("the stream is still open %s after its credential ended (last event %+v)", within, last)
		}
	}
}

// open reports whether the server has not ended the stream yet.
func (s *stream) open() bool {
	for {
		select {
		case _, ok := <-s.ch:
			if !ok {
				return false
			}
		default:
			return true
		}
	}
}

// The live log stream ends, with a final "end" event, within seconds of the
// credential that opened it ending: its token revoked (bearer or the
// session's), the session logged out, expired or evicted. A stream of
// another, still valid credential keeps going. Through a real HTTP server,
// the real token store and a real queue whose run never finishes.
func TestStreamEndsWithItsCredential(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, sealKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	q, err := pipelines.Open(ctx, pipelines.Options{Connection: pipelines.Connection{DataDir: filepath.Join(dir, "data")},
		Sealer: pipelines.NewSealer(sealKey)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	// No worker: the run stays queued, so its stream never ends by itself.
	e, err := q.Enqueue(ctx, pipelines.Request{DeliveryID: "stream-1", Repo: "acme/hello",
		CloneURL: "https://github.com/acme/hello.git", Ref: "refs/heads/main", Commit: strings.Repeat("ab", 20)})
	if err != nil {
		t.Fatal(err)
	}
	events := "/ui/runs/" + e.RunID + "/events"
	store, err := tokens.Open(filepath.Join(dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	bystander, _, err := store.Create(tokens.CreateOptions{Name: "bystander", Scopes: []auth.Scope{auth.ScopeRunsRead}})
	if err != nil {
		t.Fatal(err)
	}
	csrfRE := regexp.MustCompile(`name="csrf" value="([^"]+)"`)

	// cred is the credential under test: a token, and the session
	// logged in with it (when the case uses one).
	type cred struct {
		base, token, tokenID string
		session, csrf        string
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	cookie := func(id string) func(*http.Request) {
		return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "gantry_session", Value: id}) }
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	login := func(t *testing.T, base, tok string) string {
		t.Helper()
		resp, err := noRedirect.PostForm(base+"/ui/login", url.Values{"token": {tok}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == "gantry_session" && c.Value != "" {
				return c.Value
			}
		}
		t.Fatalf("login: %d, no session cookie", resp.StatusCode)
		return ""
	}
	// withSession logs in and reads the session's CSRF token off the run
	// page, as the page's log-out button has it.
	withSession := func(t *testing.T, c *cred) func(*http.Request) {
		t.Helper()
		c.session = login(t, c.base, c.token)
		req, _ := http.NewRequest(http.MethodGet, c.base+"/ui/runs/"+e.RunID, nil)
		cookie(c.session)(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := csrfRE.FindSubmatch(b)
		if m == nil {
			t.Fatalf("no CSRF token on the run page: %d", resp.StatusCode)
		}
		c.csrf = string(m[1])
		return cookie(c.session)
	}
	revoke := func(t *testing.T, c *cred) {
		if _, err := store.Revoke(c.tokenID); err != nil {
			t.Fatal(err)
		}
	}

	for i, c := range []struct {
		name    string
		opts    func(*Options)
		session bool // open the stream with a session cookie, not the bearer token
		end     func(t *testing.T, c *cred)
		reason  string
	}{
		{name: "bearer token revoked", end: revoke, reason: "no longer valid"},
		{name: "session's token revoked", session: true, end: revoke, reason: "no longer valid"},
		{name: "session logged out", session: true, end: func(t *testing.T, c *cred) {
			req, _ := http.NewRequest(http.MethodPost, c.base+"/ui/logout", strings.NewReader(url.Values{"csrf": {c.csrf}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			cookie(c.session)(req)
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("logout: %d", resp.StatusCode)
			}
		}, reason: "signed out"},
		{name: "session expired", opts: func(o *Options) { o.SessionTTL = 2 * time.Second }, session: true,
			end: func(*testing.T, *cred) {}, reason: "expired"}, // the clock does it
		{name: "session evicted by a newer login", opts: func(o *Options) { o.MaxSessions = 1 }, session: true,
			end: func(t *testing.T, c *cred) { login(t, c.base, c.token) }, reason: "signed out"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := Options{Store: q, Auth: auth.Chain{store}, InsecureCookies: true, PollInterval: 20 * time.Millisecond}
			if c.opts != nil {
				c.opts(&o)
			}
			d, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			d.authInterval = 50 * time.Millisecond
			srv := httptest.NewServer(d)
			t.Cleanup(srv.Close)
			tok, rec, err := store.Create(tokens.CreateOptions{Name: fmt.Sprintf("viewer-%d", i), Scopes: []auth.Scope{auth.ScopeRunsRead}})
			if err != nil {
				t.Fatal(err)
			}
			c0 := &cred{base: srv.URL, token: tok, tokenID: rec.ID}
			other := openStream(t, srv.URL, events, bearer(bystander))
			how := bearer(tok)
			if c.session {
				how = withSession(t, c0)
			}
			s := openStream(t, srv.URL, events, how)
			if !s.open() {
				t.Fatal("the stream ended before its credential did")
			}
			c.end(t, c0)
			last := s.awaitEnd(t, 10*time.Second)
			var end struct{ Reason string }
			if last.name != "end" || json.Unmarshal([]byte(last.data), &end) != nil || !strings.Contains(end.Reason, c.reason) {
				t.Fatalf("last event %+v, want end naming %q", last, c.reason)
			}
			if !other.open() {
				t.Fatal("the stream of a still valid token ended too")
			}
		})
	}
}
