package main

import (
	"net/http"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/auth"
	"github.com/gantry-dev/gantry/dashboard"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/tokens"
)

// access is the wiring of scoped tokens, the audit log and the dashboard
// for gantry serve.
type access struct {
	tokens *tokens.Store
	audit  *audit.Recorder
	close  func()
}

func openAccess(a *app) (*access, error) {
	cfg := a.cfg
	store, err := tokens.Open(cfg.Tokens.StorePath(cfg.Queue.DataDir))
	if err != nil {
		return nil, err
	}
	acc := &access{tokens: store, audit: &audit.Recorder{Log: a.log}, close: func() {}}
	if path := cfg.Audit.FilePath(cfg.Queue.DataDir); path != "" {
		f, err := audit.OpenFile(path)
		if err != nil {
			return nil, err
		}
		acc.audit.Sink, acc.close = f, func() { _ = f.Close() }
	}
	return acc, nil
}

// dashboardHandler returns the /ui/ handler, or nil when turned off.
func (acc *access) dashboardHandler(a *app, q *pipelines.Queue, authn auth.Authenticator) (http.Handler, error) {
	d := a.cfg.Dashboard
	if !d.Enabled {
		return nil, nil
	}
	return dashboard.New(dashboard.Options{Store: q, Auth: authn, Audit: acc.audit, SessionTTL: d.SessionTTL,
		InsecureCookies: d.InsecureCookies, CommitURL: d.CommitURL, Timeout: a.cfg.Queue.Timeout, Logger: a.log})
}
