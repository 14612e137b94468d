//go:build !gantry_role_build && !gantry_role_policy

package main

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/audit"
	auditstream "github.com/gantry-dev/gantry/audit/stream"
	"github.com/gantry-dev/gantry/pipelines"
)

// openAuditSink opens the audit log of the audit section: the JSON-lines
// file (unless audit.file is "-") and, when js is set and audit.stream is
// on, the GANTRY_AUDIT stream. It returns a nil sink when both are off.
// close releases the file.
func openAuditSink(ctx context.Context, a *app, js jetstream.JetStream) (audit.Sink, func(), error) {
	cfg := a.cfg
	var (
		sinks audit.Multi
		close = func() {}
	)
	if path := cfg.Audit.FilePath(cfg.Queue.DataDir); path != "" {
		f, err := audit.OpenFile(path)
		if err != nil {
			return nil, nil, err
		}
		sinks, close = append(sinks, f), func() { _ = f.Close() }
	}
	if js != nil && cfg.Audit.Stream {
		var s *auditstream.Sink
		var err error
		if cfg.Queue.Provisioned {
			s, err = auditstream.Bind(ctx, js) // created by `gantry queue setup`
		} else {
			s, err = auditstream.New(ctx, js, cfg.Queue.Replicas, cfg.Audit.StreamMaxAge)
		}
		if err != nil {
			close()
			return nil, nil, err
		}
		sinks = append(sinks, s)
		a.log.Info("audit records also go to the JetStream stream", "stream", auditstream.Name)
	}
	switch len(sinks) {
	case 0:
		a.log.Warn("audit log off (audit.file is \"-\" and no stream)")
		return nil, close, nil
	case 1:
		return sinks[0], close, nil
	}
	return sinks, close, nil
}

// externalQueue returns the connection settings of queue.natsURL, for
// processes that publish audit records without opening the queue.
func externalQueue(a *app) pipelines.Connection {
	c := a.cfg.Queue
	return pipelines.Connection{
		URL: c.NATSURL, CredsFile: c.CredsFile, TokenFile: c.TokenFile,
		TLSCAFile: c.TLSCAFile, TLSCertFile: c.TLSCertFile, TLSKeyFile: c.TLSKeyFile,
		Timeout: c.Timeout, Logger: a.log, InboxPrefix: c.InboxPrefix,
	}
}
