//go:build !gantry_role_build && !gantry_role_policy

package main

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/internal/tlsreload"
	"github.com/gantry-dev/gantry/server"
)

// What every role's HTTP listeners share (gantry serve, worker and
// admission): certificate-rotation audit and server options.

// auditCertRotation records each serving-certificate rotation of rl (a
// config reload that changes who the server claims to be).
func auditCertRotation(rl *tlsreload.Reloader, rec *audit.Recorder, component string) {
	if rl == nil {
		return
	}
	rl.OnReload(func(ev tlsreload.Reloaded) {
		rec.Record(context.Background(), audit.Event{
			Time: time.Now().UTC(), Action: audit.ActionConfigReload, Actor: "gantry", Target: component + " tls certificate",
			Outcome: "ok", Details: map[string]string{
				"certFile": ev.CertFile, "subject": ev.Leaf.Subject.String(), "sha256": ev.SHA256,
				"notAfter": ev.Leaf.NotAfter.UTC().Format(time.RFC3339),
			},
		})
	})
}

// listenerOptions are what every HTTP listener of gantry serve and gantry
// worker shares: TLS (from servingTLS), the header cap and the timeouts of
// the server section. Callers add their routes, readiness and metrics.
func listenerOptions(a *app, tlsConf *tls.Config) server.Options {
	s := a.cfg.Server
	return server.Options{
		TLS: tlsConf, InsecureHTTP: s.InsecureHTTP, MaxHeaderBytes: s.MaxHeaderBytes,
		ReadHeaderTimeout: s.ReadHeaderTimeout, ReadTimeout: s.ReadTimeout, WriteTimeout: s.WriteTimeout,
		IdleTimeout: s.IdleTimeout, ShutdownTimeout: s.ShutdownTimeout, Logger: a.log,
	}
}
