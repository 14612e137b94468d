package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Builder configures image builds (`gantry build` and the pipeline's build
// stage): which buildkitd daemons to use, how to reach them, and what every
// build records and pushes.
type Builder struct {
	// Addrs is the pool of buildkitd addresses: unix:///path/to/buildkitd.sock
	// or tcp://host:port (TLS with the tls keys below). A build goes to the
	// least busy daemon that answers; an unreachable one is skipped.
	Addrs []string `yaml:"addrs"`
	// TLS configures tcp:// daemons. All values are file paths.
	TLS BuilderTLS `yaml:"tls"`
	// Provenance is the SLSA provenance attestation attached to every image:
	// max (all build inputs recorded), min, or off.
	Provenance string `yaml:"provenance" allowed:"max,min,off"`
	// Platforms to build for (e.g. linux/amd64,linux/arm64). Empty: the
	// daemon's own platform.
	Platforms []string `yaml:"platforms"`
	// Cache configures a BuildKit registry cache (type=registry).
	Cache BuilderCache `yaml:"cache"`
	// Timeout bounds one build, push included.
	Timeout time.Duration `yaml:"timeout"`
	// DialTimeout bounds connecting to one daemon before the next is tried.
	DialTimeout time.Duration `yaml:"dialTimeout"`
}

// BuilderTLS holds the files for mutual TLS to tcp:// daemons.
type BuilderTLS struct {
	// CACert verifies the daemons' certificates. Empty: system roots.
	CACert string `yaml:"caCert"`
	// Cert and Key are the client certificate and key files.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ServerName overrides the name checked in the daemon's certificate.
	ServerName string `yaml:"serverName"`
}

// BuilderCache is a registry cache shared between builds and daemons.
type BuilderCache struct {
	// Import lists cache references (repo:tag) read before building.
	Import []string `yaml:"import"`
	// Export is the cache reference (repo:tag) written after a build.
	// Empty: no cache is exported.
	Export string `yaml:"export"`
	// Mode is what is exported: min (final image layers) or max (every
	// intermediate stage too).
	Mode string `yaml:"mode" allowed:"min,max"`
}

// DefaultBuilder returns the builder section's defaults: buildkitd's own
// default socket, max provenance.
func DefaultBuilder() Builder {
	return Builder{
		Addrs:       []string{"unix:///run/buildkit/buildkitd.sock"},
		Provenance:  "max",
		Cache:       BuilderCache{Mode: "min"},
		Timeout:     30 * time.Minute,
		DialTimeout: 10 * time.Second,
	}
}

// Validate checks addresses, TLS pairs and bounds.
func (b *Builder) Validate() error {
	var errs []error
	if len(b.Addrs) == 0 {
		errs = append(errs, errors.New("builder.addrs: at least one buildkitd address is needed"))
	}
	for _, a := range b.Addrs {
		u, err := url.Parse(a)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("builder.addrs: %q: %v", a, err))
		case u.Scheme == "unix" && u.Path != "":
		case u.Scheme == "tcp" && u.Host != "":
		default:
			errs = append(errs, fmt.Errorf("builder.addrs: %q must be unix:///path or tcp://host:port", a))
		}
	}
	if (b.TLS.Cert == "") != (b.TLS.Key == "") {
		errs = append(errs, errors.New("builder.tls: cert and key go together: set both or neither"))
	}
	for _, p := range b.Platforms {
		if parts := strings.Split(p, "/"); len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			errs = append(errs, fmt.Errorf("builder.platforms: %q must be os/arch[/variant]", p))
		}
	}
	if b.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("builder.timeout must be positive, got %s", b.Timeout))
	}
	if b.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("builder.dialTimeout must be positive, got %s", b.DialTimeout))
	}
	return errors.Join(errs...)
}

// Lint configures Dockerfile lint (`gantry lint` and the pipeline's lint
// stage).
type Lint struct {
	// FailOn is the lowest severity that fails lint: error, warning, info,
	// or never (report only).
	FailOn string `yaml:"failOn" allowed:"error,warning,info,never"`
	// Hadolint is the hadolint binary. Empty: "hadolint" on PATH if there
	// (absent: noted once, the other checks still run); "off": never run.
	Hadolint string `yaml:"hadolint"`
	// Severity overrides a rule's severity by rule id (Gantry, BuildKit or
	// hadolint): error, warning, info, or off to drop the rule.
	Severity map[string]string `yaml:"severity"`
	// Ignore drops findings of a rule; a reason is required.
	Ignore []LintIgnore `yaml:"ignore"`
}

// LintIgnore is one accepted finding.
type LintIgnore struct {
	Rule   string `yaml:"rule"`
	Reason string `yaml:"reason"`
	// File limits the ignore to one Dockerfile path. Empty: every file.
	File string `yaml:"file"`
}

// DefaultLint returns the lint section's defaults: fail on errors.
func DefaultLint() Lint {
	return Lint{FailOn: "error"}
}

// Validate checks severities and that every ignore says why.
func (l *Lint) Validate() error {
	var errs []error
	for rule, s := range l.Severity {
		switch strings.ToLower(s) {
		case "error", "warning", "info", "off":
		default:
			errs = append(errs, fmt.Errorf("lint.severity.%s: %q is not allowed (allowed: error, warning, info, off)", rule, s))
		}
	}
	for i, ig := range l.Ignore {
		if strings.TrimSpace(ig.Rule) == "" {
			errs = append(errs, fmt.Errorf("lint.ignore[%d]: rule is required", i))
		}
		if strings.TrimSpace(ig.Reason) == "" {
			errs = append(errs, fmt.Errorf("lint.ignore[%d] (%s): reason is required: say why the finding is accepted", i, ig.Rule))
		}
	}
	return errors.Join(errs...)
}
