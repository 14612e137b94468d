package config

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// Registry configures how every part of Gantry reaches OCI registries
// (push, scan, sign, verify, admission image-config reads).
type Registry struct {
	// Insecure lists registry hosts (host or host:port) reached over plain
	// HTTP. Only for loopback test registries and air-gapped mirrors behind
	// another layer of transport security; empty by default.
	Insecure []string `yaml:"insecure"`
	// AuthDir is a directory holding a Docker config.json with registry
	// credentials (as DOCKER_CONFIG). Empty: $DOCKER_CONFIG or ~/.docker.
	AuthDir string `yaml:"authDir"`
	// Timeout bounds each registry request.
	Timeout time.Duration `yaml:"timeout"`
}

// Validate checks the insecure list holds bare hosts.
func (r *Registry) Validate() error {
	for _, h := range r.Insecure {
		if h == "" || strings.Contains(h, "/") || strings.Contains(h, "://") {
			return fmt.Errorf("registry.insecure: %q must be a host or host:port, no scheme or path", h)
		}
		if strings.Contains(h, ":") {
			if _, _, err := net.SplitHostPort(h); err != nil {
				return fmt.Errorf("registry.insecure: %q: %v", h, err)
			}
		}
	}
	if r.Timeout <= 0 {
		return fmt.Errorf("registry.timeout must be positive, got %s", r.Timeout)
	}
	return nil
}
