package config

import (
	"fmt"
	"path/filepath"
	"time"
)

// Tokens configures the store of scoped API tokens (`gantry token`).
type Tokens struct {
	// Store is the token file (hashes only, mode 0600). Empty:
	// tokens.json in queue.dataDir. Several `gantry serve` replicas
	// (external NATS) share it on a shared volume or a Secret mount.
	Store string `yaml:"store"`
}

// StorePath returns the token file, defaulting to dataDir/tokens.json.
func (t Tokens) StorePath(dataDir string) string {
	if t.Store != "" {
		return t.Store
	}
	return filepath.Join(dataDir, "tokens.json")
}

// Audit configures the audit log: cancels, token changes, admission
// break-glass and exemptions, policy and configuration reloads.
type Audit struct {
	// File is the append-only JSON-lines log. Empty: audit.jsonl in
	// queue.dataDir ("-" turns the file off, for read-only filesystems
	// with Stream on).
	File string `yaml:"file"`
	// Stream also publishes each record to the GANTRY_AUDIT JetStream
	// stream (deletes and purges refused) when the queue is external
	// (queue.natsURL).
	Stream bool `yaml:"stream"`
	// StreamMaxAge is how long the stream keeps records.
	StreamMaxAge time.Duration `yaml:"streamMaxAge"`
}

// DefaultAudit returns the audit defaults: on.
func DefaultAudit() Audit { return Audit{Stream: true, StreamMaxAge: 365 * 24 * time.Hour} }

// FilePath returns the audit file ("" when turned off).
func (a Audit) FilePath(dataDir string) string {
	switch a.File {
	case "-":
		return ""
	case "":
		return filepath.Join(dataDir, "audit.jsonl")
	}
	return a.File
}

// Validate checks the stream retention.
func (a *Audit) Validate() error {
	if a.StreamMaxAge < time.Hour {
		return fmt.Errorf("audit.streamMaxAge must be at least 1h, got %s", a.StreamMaxAge)
	}
	return nil
}

// Dashboard configures the web dashboard under /ui/ of `gantry serve`.
type Dashboard struct {
	// Enabled serves the dashboard.
	Enabled bool `yaml:"enabled"`
	// SessionTTL is how long a dashboard login lasts (never beyond the
	// token's own expiry).
	SessionTTL time.Duration `yaml:"sessionTTL"`
	// InsecureCookies drops the Secure flag from the session cookie, for
	// plain-HTTP development on localhost only.
	InsecureCookies bool `yaml:"insecureCookies"`
	// CommitURL is the commit link template: {repo} and {commit} are
	// replaced.
	CommitURL string `yaml:"commitURL"`
}

// DefaultDashboard returns the dashboard defaults.
func DefaultDashboard() Dashboard {
	return Dashboard{Enabled: true, SessionTTL: 8 * time.Hour, CommitURL: "https://github.com/{repo}/commit/{commit}"}
}

// Validate checks the session lifetime and the link template.
func (d *Dashboard) Validate() error {
	if d.SessionTTL < time.Minute || d.SessionTTL > 7*24*time.Hour {
		return fmt.Errorf("dashboard.sessionTTL must be 1m..168h, got %s", d.SessionTTL)
	}
	if d.CommitURL != "" && !(len(d.CommitURL) > 8 && (d.CommitURL[:8] == "https://" || d.CommitURL[:7] == "http://")) {
		return fmt.Errorf("dashboard.commitURL %q: want an http(s) URL template with {repo} and {commit}", d.CommitURL)
	}
	return nil
}
