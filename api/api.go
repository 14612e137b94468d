package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/auth"
	"github.com/gantry-dev/gantry/pipelines"
)

// Store is what the API reads and changes (pipelines.Queue).
type Store interface {
	List(ctx context.Context, f pipelines.Filter) (pipelines.Page, error)
	Get(ctx context.Context, id string) (*pipelines.Run, error)
	Cancel(ctx context.Context, id, reason string) (*pipelines.Run, error)
	WriteLogs(ctx context.Context, w io.Writer, run *pipelines.Run, stage string) error
}

// Options configure the API.
type Options struct {
	Store Store
	// Auth decides who a request comes from (auth.Chain of token store,
	// tokens file, OIDC ...). Each route then requires a scope.
	Auth auth.Authenticator
	// Audit records cancels (nil: not recorded).
	Audit *audit.Recorder
	// Timeout bounds each request's store calls.
	Timeout time.Duration
	Logger  *slog.Logger
	// AfterAuth, if set, wraps every route once the caller is known (the
	// per-token rate limit of server.rateLimits.apiPerToken).
	AfterAuth func(http.Handler) http.Handler
}

// New returns the handler for /api/v1/..., every route behind Auth and a
// scope: reading needs runs:read, cancelling runs:write.
func New(opts Options) (http.Handler, error) {
	if opts.Store == nil || opts.Auth == nil {
		return nil, errors.New("api: a store and an authenticator are required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &handler{opts: opts}
	mux := http.NewServeMux()
	for _, rt := range a.routes() {
		mux.Handle(rt.Pattern, auth.Require(rt.Scope, authError, rt.handler))
	}
	var inner http.Handler = mux
	if opts.AfterAuth != nil {
		inner = opts.AfterAuth(mux)
	}
	return auth.Middleware(opts.Auth, authError)(inner), nil
}

// Route is one API route and the scope it needs.
type Route struct {
	Pattern string
	Scope   auth.Scope
	handler http.HandlerFunc
}

func (a *handler) routes() []Route {
	return []Route{
		{"GET /api/v1/runs", auth.ScopeRunsRead, a.list},
		{"GET /api/v1/runs/{id}", auth.ScopeRunsRead, a.get},
		{"GET /api/v1/runs/{id}/logs", auth.ScopeRunsRead, a.logs},
		{"POST /api/v1/runs/{id}/cancel", auth.ScopeRunsWrite, a.cancel},
	}
}

// Routes lists every API route with the scope it needs (for docs, and for
// tests that check each route enforces it).
func Routes() []Route { return (&handler{}).routes() }

func authError(w http.ResponseWriter, _ *http.Request, code int, msg string) {
	writeError(w, code, msg)
}

type handler struct{ opts Options }

func (a *handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := pipelines.Filter{Repo: q.Get("repo"), State: pipelines.State(q.Get("state")), Before: q.Get("before")}
	if f.State != "" && !f.State.Valid() {
		writeError(w, http.StatusBadRequest, "state must be one of queued, running, passed, failed, cancelled, error")
		return
	}
	if f.Before != "" && !pipelines.ValidRunID(f.Before) {
		writeError(w, http.StatusBadRequest, "before must be a run id (the next cursor of the previous page)")
		return
	}
	if len(f.Repo) > 200 {
		writeError(w, http.StatusBadRequest, "repo too long")
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			writeError(w, http.StatusBadRequest, "limit must be 1..500")
			return
		}
		f.Limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.opts.Timeout)
	defer cancel()
	page, err := a.opts.Store.List(ctx, f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (a *handler) get(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), a.opts.Timeout)
	defer cancel()
	run, err := a.opts.Store.Get(ctx, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (a *handler) logs(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), a.opts.Timeout)
	defer cancel()
	run, err := a.opts.Store.Get(ctx, r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	stage := r.URL.Query().Get("stage")
	if stage != "" && run.Stage(stage) == nil {
		writeError(w, http.StatusNotFound, "the run has no stage "+strconv.Quote(stage))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if err := a.opts.Store.WriteLogs(ctx, w, run, stage); err != nil {
		// Headers are gone already; the log line is what remains.
		a.opts.Logger.Warn("api: writing logs failed", "run", run.ID, "err", err)
	}
}

func (a *handler) cancel(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), a.opts.Timeout)
	defer cancel()
	p, _ := auth.FromContext(r.Context())
	id := r.PathValue("id")
	run, err := CancelRun(ctx, a.opts.Store, a.opts.Audit, p, id, "api", "cancelled via the API by "+p.Subject)
	if errors.Is(err, pipelines.ErrFinal) {
		writeJSON(w, http.StatusConflict, map[string]any{"error": "the run already finished", "run": run})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.opts.Logger.Info("run cancelled via the API", "run", run.ID, "by", p.Subject)
	writeJSON(w, http.StatusOK, run)
}

func (a *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, pipelines.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such run")
		return
	}
	a.opts.Logger.Error("api: store error", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusServiceUnavailable, "the run store is not available; retry")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// Canceller cancels runs: the part of a Store that CancelRun needs.
type Canceller interface {
	Cancel(ctx context.Context, id, reason string) (*pipelines.Run, error)
}

// CancelRun cancels run id for p with the given reason (shown on the run)
// and writes the audit record, whatever the outcome (ok, denied for a
// finished run, error). via names the surface ("api", "dashboard"). The API
// and the dashboard share it so that a cancel is recorded the same way from
// both.
func CancelRun(ctx context.Context, store Canceller, rec *audit.Recorder, p auth.Principal, id, via, reason string) (*pipelines.Run, error) {
	run, err := store.Cancel(ctx, id, reason)
	ev := audit.ByPrincipal(audit.Event{Action: audit.ActionRunCancel, Target: id, Details: map[string]string{"via": via}}, p)
	switch {
	case err == nil:
		ev.Details["repo"], ev.Details["commit"] = run.Repo, run.Commit
	case errors.Is(err, pipelines.ErrFinal):
		ev.Outcome, ev.Reason = audit.OutcomeDenied, "the run already finished"
	default:
		ev.Outcome, ev.Reason = audit.OutcomeError, "cancel failed"
	}
	rec.Record(ctx, ev)
	return run, err
}
