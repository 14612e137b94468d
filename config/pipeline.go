package config

import (
	"fmt"
	"net/url"
	"strings"
)

// Pipeline configures how a run's stages execute (pipelines/stages): the
// checkout of the pushed commit and how many functions of one run are
// worked on at once. The stages' own settings live in their sections
// (builder, lint, scanner, signer, deploy, notify).
type Pipeline struct {
	// Parallel is how many functions of one run go through their stages at
	// once (each build is one BuildKit solve).
	Parallel int `yaml:"parallel"`
	// WorkDir holds the checkouts of running runs (one directory per run,
	// removed when the run ends). Empty: a directory under the system's
	// temporary directory.
	WorkDir string `yaml:"workDir"`
	// AllowLocalRepos lets runs fetch from file:// URLs and local paths.
	// Only for the demo and tests: a webhook's clone URL must never reach
	// the worker's own disk.
	AllowLocalRepos bool `yaml:"allowLocalRepos"`
	// Mirrors maps a repository (owner/name) to the URL fetched instead of
	// the push's clone URL: an internal mirror, or, with allowLocalRepos,
	// a local path (the demo).
	Mirrors map[string]string `yaml:"mirrors"`
	// GitTokenFile holds an HTTPS token (PAT or GitHub App installation
	// token) used to fetch private repositories.
	GitTokenFile string `yaml:"gitTokenFile"`
	// GitSSHKeyFile is an SSH deploy key for ssh:// and git@ clone URLs;
	// gitKnownHostsFile is then required, so the server's key is checked.
	GitSSHKeyFile     string `yaml:"gitSSHKeyFile"`
	GitKnownHostsFile string `yaml:"gitKnownHostsFile"`
	// BuilderID is the URI recorded as builder.id in the SLSA provenance
	// attestation: it names this Gantry installation.
	BuilderID string `yaml:"builderID"`
	// Deploy turns the deploy stage on; false stops after signing (the
	// stage is then recorded as skipped in its log).
	Deploy bool `yaml:"deploy"`
	// TemplateHosts are the hosts an OpenFaaS stack.yml's
	// configuration.templates sources may name (https, fetched without
	// credentials at the pinned commit).
	TemplateHosts []string `yaml:"templateHosts"`
}

// DefaultPipeline returns the defaults.
func DefaultPipeline() Pipeline {
	return Pipeline{
		Parallel:      4,
		BuilderID:     "https://github.com/gantry-dev/gantry/worker",
		Deploy:        true,
		TemplateHosts: []string{"github.com"},
	}
}

// Validate checks bounds and pairs.
func (p *Pipeline) Validate() error {
	if p.Parallel < 1 || p.Parallel > 64 {
		return fmt.Errorf("pipeline.parallel must be between 1 and 64, got %d", p.Parallel)
	}
	if p.GitTokenFile != "" && p.GitSSHKeyFile != "" {
		return fmt.Errorf("pipeline.gitTokenFile and pipeline.gitSSHKeyFile: set at most one")
	}
	if p.GitSSHKeyFile != "" && p.GitKnownHostsFile == "" {
		return fmt.Errorf("pipeline.gitSSHKeyFile needs pipeline.gitKnownHostsFile (the server's host key must be checked)")
	}
	if u, err := url.Parse(p.BuilderID); err != nil || u.Scheme == "" {
		return fmt.Errorf("pipeline.builderID %q must be an absolute URI", p.BuilderID)
	}
	return nil
}

// Mirror returns the URL pipeline.mirrors names for repo (owner/name,
// compared without regard to case, as GitHub and the allow-list do), or "".
func (p *Pipeline) Mirror(repo string) string {
	if m, ok := p.Mirrors[repo]; ok {
		return m
	}
	for k, m := range p.Mirrors {
		if strings.EqualFold(k, repo) {
			return m
		}
	}
	return ""
}
