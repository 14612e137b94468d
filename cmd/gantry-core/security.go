//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/auth"
	"github.com/gantry-dev/gantry/auth/oidc"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/ratelimit"
	"github.com/gantry-dev/gantry/internal/tlsreload"
	"github.com/gantry-dev/gantry/pipelines"
)

// serverSecurityFlags adds `gantry serve`'s TLS flags and returns their keys.
func serverSecurityFlags(cmd *cobra.Command) map[string]string {
	fl := cmd.Flags()
	fl.String("tls-cert", "", "serving certificate file, reloaded when it changes (server.tls.certFile)")
	fl.String("tls-key", "", "serving key file (server.tls.keyFile)")
	fl.Bool("insecure-http", false, "serve plain HTTP, only behind a proxy that terminates TLS (server.insecureHTTP)")
	return map[string]string{"server.tls.certFile": "tls-cert", "server.tls.keyFile": "tls-key", "server.insecureHTTP": "insecure-http"}
}

// hardening is the wiring of server.tls and server.rateLimits for
// `gantry serve`: the TLS configuration and the limits in front of the
// webhook receiver and the API.
type hardening struct {
	tls *tls.Config
	// webhook wraps the receiver: failed-auth budget and rate per source.
	webhook func(http.Handler) http.Handler
	// api wraps the API before authentication (failed-auth budget, rate
	// per source); perPrincipal limits after authentication.
	api          func(http.Handler) http.Handler
	perPrincipal func(http.Handler) http.Handler
	repoLimit    func(repo string) (bool, time.Duration)
	// oidc verifies ID tokens of api.oidc.issuer; nil when off. Put it in
	// the auth.Chain of the API and the dashboard.
	oidc auth.Authenticator
	// certs reloads the serving certificate; nil with insecureHTTP.
	certs *tlsreload.Reloader
}

// servingTLS is server.tls for every HTTP listener of gantry serve and
// gantry worker: the reloading certificate, or nil, nil with
// server.insecureHTTP (logged as a warning). Neither set: a usage error,
// so nothing is ever served in clear by default.
func servingTLS(a *app, command string) (*tls.Config, *tlsreload.Reloader, error) {
	s := a.cfg.Server
	switch {
	case s.TLS.CertFile != "":
		rl, err := tlsreload.NewReloader(s.TLS.CertFile, s.TLS.KeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("server.tls: %w", err)
		}
		return rl.TLSConfig(), rl, nil
	case !s.InsecureHTTP:
		return nil, nil, usageError("no serving certificate: set server.tls.certFile and server.tls.keyFile (--tls-cert/--tls-key), " +
			"or server.insecureHTTP: true (--insecure-http) only behind a proxy that terminates TLS")
	}
	a.log.Warn("server.insecureHTTP is set: TLS must be terminated by a proxy in front of gantry " + command)
	return nil, nil, nil
}

func newHardening(a *app, reg prometheus.Registerer) (*hardening, error) {
	s := a.cfg.Server
	h := &hardening{}
	var err error
	if h.tls, h.certs, err = servingTLS(a, "serve"); err != nil {
		return nil, err
	}
	rl := s.RateLimits
	trusted, err := config.ParsePrefixes(rl.TrustedProxies)
	if err != nil {
		return nil, usageError("server.rateLimits.trustedProxies: " + err.Error())
	}
	m, err := ratelimit.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	lim := func(l config.RateLimit) *ratelimit.Keyed {
		return ratelimit.New(ratelimit.Limit{Rate: l.Rate, Burst: l.Burst}, rl.MaxTrackedKeys)
	}
	sources := ratelimit.Sources{Trusted: trusted}
	// One failure budget per source across both endpoints: guessing
	// tokens and forging signatures drain the same bucket.
	failures := lim(rl.FailedAuthPerSource)
	h.webhook = (&ratelimit.Guard{Endpoint: "webhook", LimitName: "webhook_source", Sources: sources,
		PerSource: lim(rl.WebhookPerSource), Failures: failures, Metrics: m}).Wrap
	h.api = (&ratelimit.Guard{Endpoint: "api", LimitName: "api_source", Sources: sources,
		Failures: failures, Metrics: m}).Wrap
	h.perPrincipal = ratelimit.PerKey(lim(rl.APIPerToken), "api_token", "too many requests for this token", m,
		func(r *http.Request) string {
			if p, ok := auth.FromContext(r.Context()); ok {
				return p.Method + ":" + p.Subject
			}
			return ""
		})
	if repo := lim(rl.WebhookPerRepo); repo != nil {
		h.repoLimit = func(name string) (bool, time.Duration) {
			ok, retry := repo.Allow(name)
			if !ok {
				m.Limited("webhook_repo")
			}
			return ok, retry
		}
	}
	if o := a.cfg.API.OIDC; o.Enabled() {
		groups := make([]oidc.GroupScopes, 0, len(o.Groups))
		for _, g := range o.Groups {
			gs := oidc.GroupScopes{Group: g.Group}
			for _, sc := range g.Scopes {
				gs.Scopes = append(gs.Scopes, auth.Scope(sc))
			}
			groups = append(groups, gs)
		}
		v, err := oidc.New(context.Background(), oidc.Config{
			Issuer: o.Issuer, Audience: o.Audience, JWKSURL: o.JWKSURL, JWKSFile: o.JWKSFile, CAFile: o.CAFile,
			Algorithms: o.Algorithms, SubjectClaim: o.SubjectClaim, GroupsClaim: o.GroupsClaim, Groups: groups,
			Leeway: o.Leeway, Logger: a.log,
		})
		if err != nil {
			return nil, fmt.Errorf("api.oidc: %w", err)
		}
		h.oidc = v
		a.log.Info("OIDC ID tokens accepted", "issuer", o.Issuer, "audience", o.Audience)
	}
	return h, nil
}

// backlog returns the receiver's queued-runs counter, or nil when the
// bound is off (webhooks.maxQueuedPerRepo: 0).
func backlog(ctx context.Context, a *app, q *pipelines.Queue) (func(context.Context, string) (int, error), func(), error) {
	if a.cfg.Webhooks.MaxQueuedPerRepo <= 0 {
		return nil, func() {}, nil
	}
	b, err := q.WatchBacklog(ctx)
	if err != nil {
		return nil, nil, err
	}
	return b.Queued, func() { _ = b.Close() }, nil
}
