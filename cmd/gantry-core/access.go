//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"context"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

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

// openAccess opens the token store and the audit log. With an external
// queue (queue.natsURL) the audit records also go to the GANTRY_AUDIT
// stream on the queue's server, shared by every replica; the embedded
// server's store is this process's own disk, where the file already is.
func openAccess(ctx context.Context, a *app, q *pipelines.Queue) (*access, error) {
	cfg := a.cfg
	store, err := tokens.Open(cfg.Tokens.StorePath(cfg.Queue.DataDir))
	if err != nil {
		return nil, err
	}
	var js jetstream.JetStream
	if cfg.Queue.NATSURL != "" && q != nil {
		js = q.JetStream()
	}
	sink, closeSink, err := openAuditSink(ctx, a, js)
	if err != nil {
		return nil, err
	}
	return &access{tokens: store, audit: &audit.Recorder{Sink: sink, Log: a.log}, close: closeSink}, nil
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
