// Package dashboard serves Gantry's web dashboard under /ui/: the runs
// list, a run's stages and logs (live over Server-Sent Events while it
// runs), findings, image digests and signature status, and a cancel
// button. Pages are html/template; the only script is a static file,
// allowed by a strict Content-Security-Policy (no inline scripts).
//
// Authentication is the API's: a bearer token, or a session cookie got by
// pasting a token into the login form. Sessions live in memory and keep
// the token to re-check it on every request, so revoking or expiring a
// token ends its sessions at once. Cookie-authenticated changes (cancel,
// logout) need the session's CSRF token and a same-origin request.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/api"
	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/auth"
	"github.com/gantry-dev/gantry/pipelines"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// CSP is the Content-Security-Policy of every dashboard response.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Store is what the dashboard reads and changes (pipelines.Queue).
type Store interface {
	List(ctx context.Context, f pipelines.Filter) (pipelines.Page, error)
	Get(ctx context.Context, id string) (*pipelines.Run, error)
	Cancel(ctx context.Context, id, reason string) (*pipelines.Run, error)
	StageLog(ctx context.Context, runID, stage string) ([]byte, error)
}

// Options configure the dashboard.
type Options struct {
	Store Store
	// Auth authenticates bearer tokens: the same chain as the API. The
	// login form checks pasted tokens with it too.
	Auth  auth.Authenticator
	Audit *audit.Recorder
	// SessionTTL bounds a login (default 8h).
	SessionTTL time.Duration
	// InsecureCookies drops Secure from the session cookie (plain-HTTP
	// development only); the cookie is then "gantry_session" instead of
	// "__Host-gantry_session".
	InsecureCookies bool
	// CommitURL is a link template with {repo} and {commit}; empty: no link.
	CommitURL string
	// Timeout bounds each store call (default 15s).
	Timeout time.Duration
	// PollInterval is how often a live page's stream checks the run
	// (default 1s).
	PollInterval time.Duration
	// MaxSessions bounds the sessions kept (default 10000).
	MaxSessions int
	Logger      *slog.Logger
}

// Dashboard is the /ui/ handler.
type Dashboard struct {
	opts Options
	tmpl map[string]*template.Template
	mux  *http.ServeMux

	mu       sync.Mutex
	sessions map[[32]byte]*session

	// authInterval is how often an open live stream re-checks the
	// credential that opened it (default 1s).
	authInterval time.Duration
}

type session struct {
	token     string
	csrf      string
	principal auth.Principal
	expires   time.Time
}

// New builds the dashboard.
func New(opts Options) (*Dashboard, error) {
	if opts.Store == nil || opts.Auth == nil {
		return nil, errors.New("dashboard: a store and an authenticator are required")
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 8 * time.Hour
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 15 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 10000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dashboard{opts: opts, tmpl: map[string]*template.Template{}, sessions: map[[32]byte]*session{}, authInterval: time.Second}
	for _, page := range []string{"login", "runs", "run", "error"} {
		t, err := template.New(page).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", page, err)
		}
		d.tmpl[page] = t
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	m := http.NewServeMux()
	m.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /ui/login", d.loginPage)
	m.HandleFunc("POST /ui/login", d.login)
	m.HandleFunc("POST /ui/logout", d.logout)
	m.HandleFunc("GET /ui/{$}", d.require(auth.ScopeRunsRead, d.runs))
	m.HandleFunc("GET /ui/runs/{id}", d.require(auth.ScopeRunsRead, d.run))
	m.HandleFunc("GET /ui/runs/{id}/events", d.require(auth.ScopeRunsRead, d.events))
	m.HandleFunc("POST /ui/runs/{id}/cancel", d.require(auth.ScopeRunsWrite, d.cancel))
	m.HandleFunc("/ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusSeeOther) })
	d.mux = m
	return d, nil
}

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: under no-referrer browsers send
	// "Origin: null" on form posts, which the CSRF check cannot use.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
		h.Set("Cache-Control", "no-store")
	}
	d.mux.ServeHTTP(w, r)
}

func (d *Dashboard) cookieName() string {
	if d.opts.InsecureCookies {
		return "gantry_session"
	}
	return "__Host-gantry_session"
}

func sessionKey(id string) [32]byte { return sha256.Sum256([]byte(id)) }

func randomString() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// who is a request's principal, and its session when it came by cookie.
type who struct {
	p    auth.Principal
	sess *session
}

type whoKey struct{}

// identify authenticates a request: a bearer token first, else the
// session cookie (re-checking the session's token).
func (d *Dashboard) identify(r *http.Request) (who, error) {
	if _, ok := auth.BearerToken(r); ok {
		p, err := d.opts.Auth.Authenticate(r)
		return who{p: p}, err
	}
	c, err := r.Cookie(d.cookieName())
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return who{}, auth.ErrNoCredential
	}
	key := sessionKey(c.Value)
	d.mu.Lock()
	s := d.sessions[key]
	d.mu.Unlock()
	if s == nil || time.Now().After(s.expires) {
		d.drop(key)
		return who{}, auth.ErrUnauthenticated
	}
	p, err := d.checkToken(r.Context(), s.token)
	if err != nil {
		d.drop(key) // revoked or expired: the session ends with it
		return who{}, err
	}
	return who{p: p, sess: s}, nil
}

func (d *Dashboard) drop(key [32]byte) {
	d.mu.Lock()
	delete(d.sessions, key)
	d.mu.Unlock()
}

// checkToken authenticates a pasted token with the API's chain.
func (d *Dashboard) checkToken(ctx context.Context, token string) (auth.Principal, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return d.opts.Auth.Authenticate(req)
}

// require wraps a page: an unauthenticated browser is sent to the login
// form (other requests get 401), a principal without scope gets 403.
func (d *Dashboard) require(scope auth.Scope, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		wh, err := d.identify(r)
		if err != nil {
			if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/events") {
				http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			d.fail(w, r, http.StatusUnauthorized, "sign in first", wh)
			return
		}
		if !wh.p.Allows(scope) {
			d.fail(w, r, http.StatusForbidden, fmt.Sprintf("this needs the %s scope", scope), wh)
			return
		}
		h(w, r.WithContext(context.WithValue(auth.WithPrincipal(r.Context(), wh.p), whoKey{}, wh)))
	}
}

func whoFrom(ctx context.Context) who {
	wh, _ := ctx.Value(whoKey{}).(who)
	return wh
}

// sameOrigin reports whether a state-changing request comes from a page
// of this server: browsers send Origin on POST, and Sec-Fetch-Site.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		return err == nil && u.Host == r.Host
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		return s == "same-origin" || s == "none"
	}
	return true // not a browser: no ambient cookie was relied on unchecked
}

// checkCSRF guards cookie-authenticated changes. Bearer-token requests
// carry no ambient credential and need no CSRF token.
func checkCSRF(r *http.Request, wh who) bool {
	if wh.sess == nil {
		return true
	}
	got := r.PostFormValue("csrf")
	return sameOrigin(r) && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(wh.sess.csrf)) == 1
}

type pageData struct {
	Title string
	User  *auth.Principal
	CSRF  string
	Error string
	Next  string
	Runs  []runRow
	Run   *runView
	// CanCancel shows the cancel button.
	CanCancel bool
}

func (d *Dashboard) page(w http.ResponseWriter, code int, name string, data pageData, wh who) {
	if wh.p.Subject != "" {
		p := wh.p
		data.User = &p
	}
	if wh.sess != nil {
		data.CSRF = wh.sess.csrf
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := d.tmpl[name].ExecuteTemplate(w, name+".html", data); err != nil {
		d.opts.Logger.Warn("dashboard: render failed", "page", name, "err", err)
	}
}

func (d *Dashboard) fail(w http.ResponseWriter, _ *http.Request, code int, msg string, wh who) {
	d.page(w, code, "error", pageData{Title: http.StatusText(code), Error: msg}, wh)
}

func (d *Dashboard) storeFail(w http.ResponseWriter, r *http.Request, err error, wh who) {
	if errors.Is(err, pipelines.ErrNotFound) {
		d.fail(w, r, http.StatusNotFound, "no such run", wh)
		return
	}
	d.opts.Logger.Error("dashboard: store error", "path", r.URL.Path, "err", err)
	d.fail(w, r, http.StatusServiceUnavailable, "the run store is not available; retry", wh)
}

// safeNext keeps post-login redirects on the dashboard.
func safeNext(s string) string {
	if !strings.HasPrefix(s, "/ui/") || strings.HasPrefix(s, "//") || strings.ContainsAny(s, "\\\r\n") {
		return "/ui/"
	}
	return s
}

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	d.page(w, http.StatusOK, "login", pageData{Title: "Sign in", Next: safeNext(r.URL.Query().Get("next"))}, who{})
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	next := safeNext(r.PostFormValue("next"))
	if !sameOrigin(r) {
		d.fail(w, r, http.StatusForbidden, "cross-origin sign-in refused", who{})
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	p, err := d.checkToken(r.Context(), token)
	ev := audit.Event{Action: audit.ActionSessionLogin, Details: map[string]string{"via": "dashboard"}}
	if err == nil && !p.Allows(auth.ScopeRunsRead) {
		err = errors.New("the token lacks the runs:read scope")
	}
	if token == "" || err != nil {
		ev.Outcome, ev.Reason = audit.OutcomeDenied, "invalid token"
		d.opts.Audit.Record(r.Context(), ev)
		w.Header().Set("WWW-Authenticate", `Bearer realm="gantry"`)
		d.page(w, http.StatusUnauthorized, "login", pageData{Title: "Sign in", Next: next,
			Error: "That token is not valid (unknown, expired or revoked) or lacks the runs:read scope."}, who{})
		return
	}
	d.opts.Audit.Record(r.Context(), audit.ByPrincipal(ev, p))
	id := randomString()
	s := &session{token: token, csrf: randomString(), principal: p, expires: time.Now().Add(d.opts.SessionTTL)}
	d.mu.Lock()
	if len(d.sessions) >= d.opts.MaxSessions {
		d.evictLocked()
	}
	d.sessions[sessionKey(id)] = s
	d.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: d.cookieName(), Value: id, Path: "/", HttpOnly: true,
		Secure: !d.opts.InsecureCookies, SameSite: http.SameSiteStrictMode, MaxAge: int(d.opts.SessionTTL.Seconds())})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// evictLocked drops expired sessions, then the oldest-expiring ones,
// until there is room for one more.
func (d *Dashboard) evictLocked() {
	now := time.Now()
	for k, s := range d.sessions {
		if now.After(s.expires) {
			delete(d.sessions, k)
		}
	}
	for len(d.sessions) >= d.opts.MaxSessions {
		var oldest [32]byte
		var t time.Time
		for k, s := range d.sessions {
			if t.IsZero() || s.expires.Before(t) {
				oldest, t = k, s.expires
			}
		}
		delete(d.sessions, oldest)
	}
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	wh, err := d.identify(r)
	if err == nil && wh.sess != nil {
		if !checkCSRF(r, wh) {
			d.fail(w, r, http.StatusForbidden, "missing or wrong CSRF token", wh)
			return
		}
		c, _ := r.Cookie(d.cookieName())
		d.drop(sessionKey(c.Value))
	}
	http.SetCookie(w, &http.Cookie{Name: d.cookieName(), Value: "", Path: "/", HttpOnly: true,
		Secure: !d.opts.InsecureCookies, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

func (d *Dashboard) runs(w http.ResponseWriter, r *http.Request) {
	wh := whoFrom(r.Context())
	f := pipelines.Filter{Limit: 50, Before: r.URL.Query().Get("before")}
	if f.Before != "" && !pipelines.ValidRunID(f.Before) {
		d.fail(w, r, http.StatusBadRequest, "before must be a run id", wh)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.opts.Timeout)
	defer cancel()
	page, err := d.opts.Store.List(ctx, f)
	if err != nil {
		d.storeFail(w, r, err, wh)
		return
	}
	rows := make([]runRow, 0, len(page.Runs))
	now := time.Now()
	for i := range page.Runs {
		rows = append(rows, d.row(&page.Runs[i], now))
	}
	d.page(w, http.StatusOK, "runs", pageData{Title: "Runs", Runs: rows, Next: page.Next}, wh)
}

func (d *Dashboard) run(w http.ResponseWriter, r *http.Request) {
	wh := whoFrom(r.Context())
	ctx, cancel := context.WithTimeout(r.Context(), d.opts.Timeout)
	defer cancel()
	run, err := d.opts.Store.Get(ctx, r.PathValue("id"))
	if err != nil {
		d.storeFail(w, r, err, wh)
		return
	}
	v := d.view(run, time.Now())
	for i := range v.Stages {
		b, err := d.opts.Store.StageLog(ctx, run.ID, v.Stages[i].Name)
		if err != nil {
			d.storeFail(w, r, err, wh)
			return
		}
		v.Stages[i].Log = string(b)
	}
	d.page(w, http.StatusOK, "run", pageData{Title: "Run " + run.ID, Run: v,
		CanCancel: !run.State.Final() && wh.p.Allows(auth.ScopeRunsWrite)}, wh)
}

func (d *Dashboard) cancel(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	wh := whoFrom(r.Context())
	if !checkCSRF(r, wh) {
		d.fail(w, r, http.StatusForbidden, "missing or wrong CSRF token: reload the page and try again", wh)
		return
	}
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), d.opts.Timeout)
	defer cancel()
	_, err := api.CancelRun(ctx, d.opts.Store, d.opts.Audit, wh.p, id, "dashboard", "cancelled from the dashboard by "+wh.p.Subject)
	if err != nil && !errors.Is(err, pipelines.ErrFinal) {
		d.storeFail(w, r, err, wh)
		return
	}
	http.Redirect(w, r, "/ui/runs/"+url.PathEscape(id), http.StatusSeeOther)
}

type liveRun struct {
	State  pipelines.State `json:"state"`
	Stages []liveStage     `json:"stages"`
}

type liveStage struct {
	Name  string          `json:"name"`
	State pipelines.State `json:"state"`
}

// events streams a run's state and each stage's log (once stored) until
// the run is final; the page's script applies them. The credential that
// opened the stream is re-checked every authInterval: once it is revoked,
// expired, logged out or evicted the stream ends with an "end" event
// naming why (see streamCredential).
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	wh := whoFrom(r.Context())
	id := r.PathValue("id")
	ctx := r.Context()
	get := func() (*pipelines.Run, error) {
		c, cancel := context.WithTimeout(ctx, d.opts.Timeout)
		defer cancel()
		return d.opts.Store.Get(c, id)
	}
	run, err := get()
	if err != nil {
		d.storeFail(w, r, err, wh)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sentLogs := map[string]int{}
	var lastState []byte
	recheck := time.NewTicker(d.authInterval)
	defer recheck.Stop()
	for {
		// The server's write timeout would cut a long stream: extend it
		// for each write instead.
		_ = rc.SetWriteDeadline(time.Now().Add(d.opts.Timeout + d.opts.PollInterval))
		lr := liveRun{State: run.State}
		for _, s := range run.Stages {
			lr.Stages = append(lr.Stages, liveStage{Name: s.Name, State: s.State})
		}
		b, _ := json.Marshal(lr)
		if string(b) != string(lastState) {
			if err := sse(w, "run", b); err != nil {
				return
			}
			lastState = b
		}
		for _, s := range run.Stages {
			if s.LogBytes == 0 || sentLogs[s.Name] == s.LogBytes {
				continue
			}
			c, cancel := context.WithTimeout(ctx, d.opts.Timeout)
			log, err := d.opts.Store.StageLog(c, run.ID, s.Name)
			cancel()
			if err != nil {
				d.opts.Logger.Warn("dashboard: stage log", "run", run.ID, "stage", s.Name, "err", err)
				continue
			}
			lb, _ := json.Marshal(map[string]string{"stage": s.Name, "text": string(log)})
			if err := sse(w, "log", lb); err != nil {
				return
			}
			sentLogs[s.Name] = s.LogBytes
		}
		if run.State.Final() {
			_ = sse(w, "done", []byte(`{}`))
			_ = rc.Flush()
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		poll := time.NewTimer(d.opts.PollInterval)
	wait:
		for {
			select {
			case <-ctx.Done():
				poll.Stop()
				return
			case <-poll.C:
				break wait
			case <-recheck.C:
				if reason := d.streamCredential(r, wh); reason != "" {
					poll.Stop()
					d.opts.Logger.Info("dashboard: live stream ended", "run", id, "subject", wh.p.Subject, "reason", reason)
					b, _ := json.Marshal(map[string]string{"reason": reason})
					_ = rc.SetWriteDeadline(time.Now().Add(d.opts.Timeout))
					_ = sse(w, "end", b)
					_ = rc.Flush()
					return
				}
			}
		}
		if run, err = get(); err != nil {
			return
		}
	}
}

// streamCredential re-checks the credential that opened a live stream and
// returns why the stream must end, or "" while it still holds: a bearer
// token is authenticated again (revoked or expired tokens fail); a session
// must still be the same session in the table (logout and eviction remove
// it), unexpired, and its token still valid.
func (d *Dashboard) streamCredential(r *http.Request, wh who) string {
	var p auth.Principal
	var err error
	if wh.sess == nil {
		p, err = d.opts.Auth.Authenticate(r)
	} else {
		c, cerr := r.Cookie(d.cookieName())
		if cerr != nil {
			return "signed out: the session ended"
		}
		key := sessionKey(c.Value)
		d.mu.Lock()
		s := d.sessions[key]
		d.mu.Unlock()
		if s != wh.sess {
			return "signed out: the session ended"
		}
		if time.Now().After(s.expires) {
			d.drop(key)
			return "the session expired: sign in again"
		}
		if p, err = d.checkToken(r.Context(), s.token); err != nil {
			d.drop(key) // as identify does: the session ends with its token
		}
	}
	if err != nil {
		return "the credential is no longer valid (revoked or expired)"
	}
	if !p.Allows(auth.ScopeRunsRead) {
		return fmt.Sprintf("the credential no longer has the %s scope", auth.ScopeRunsRead)
	}
	return ""
}

// sse writes one event; data is JSON (one line: encoding/json escapes
// newlines inside strings).
func sse(w http.ResponseWriter, event string, data []byte) error {
	_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
	return err
}
