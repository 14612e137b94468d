package config

import (
	"fmt"
	"net"
)

// validateMetricsListen checks server.metricsListen: empty, or a host:port
// that is not the main listener's (whose port is public: GitHub's webhooks
// come in there).
func (s *Server) validateMetricsListen() error {
	if s.MetricsListen == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(s.MetricsListen)
	if err != nil {
		return fmt.Errorf("server.metricsListen %q: want host:port, or empty for no metrics (%v)", s.MetricsListen, err)
	}
	if port != "0" && s.MetricsListen == s.Listen {
		return fmt.Errorf("server.metricsListen %q is server.listen: give metrics their own port (e.g. 127.0.0.1:9090, or :9090 for in-cluster scraping)", s.MetricsListen)
	}
	return nil
}
