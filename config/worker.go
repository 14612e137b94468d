package config

import (
	"fmt"
	"net"
)

// Worker configures `gantry worker` beyond the queue section: its optional
// HTTP listener for probes and metrics.
type Worker struct {
	// Listen (host:port) serves /healthz, /readyz and /metrics only, with
	// server.tls (or plain HTTP only with server.insecureHTTP) and the
	// server section's timeouts and header bound. Empty: no listener, the
	// worker accepts no connection at all.
	Listen string `yaml:"listen"`
}

// Validate checks the listen address.
func (w *Worker) Validate() error {
	if w.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(w.Listen); err != nil {
		return fmt.Errorf("worker.listen %q: want host:port or empty for no listener (%v)", w.Listen, err)
	}
	return nil
}
