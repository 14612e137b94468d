package config

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Tenants is the server's policy for what each repository may do in the
// cluster: the repositories that push are tenants of one function
// namespace (or of one namespace each), and nothing a push carries can
// widen it.
type Tenants struct {
	// Secrets maps a repository (owner/name) to the Secrets its functions
	// may mount (`secrets:` in gantry.yaml or stack.yml), as glob patterns
	// of Secret names (hello-*, hello-db). A repository not listed may
	// mount none: a Secret in the namespace is not every tenant's to read.
	Secrets map[string][]string `yaml:"secrets"`
	// Namespaces maps a repository to its own function namespace (one
	// namespace per repository); a repository not listed deploys to
	// deploy.namespace, where function names are owned by the repository
	// that deployed them first.
	Namespaces map[string]string `yaml:"namespaces"`
}

// Validate checks repository names, patterns and namespaces.
func (t *Tenants) Validate() error {
	var errs []string
	for _, repo := range sortedKeys(t.Secrets) {
		if !validRepoName(repo) {
			errs = append(errs, fmt.Sprintf("deploy.tenants.secrets: %q is not owner/name", repo))
		}
		for _, p := range t.Secrets[repo] {
			if _, err := path.Match(p, ""); err != nil || p == "" {
				errs = append(errs, fmt.Sprintf("deploy.tenants.secrets[%s]: pattern %q is not a valid glob", repo, p))
			}
		}
	}
	for _, repo := range sortedKeys(t.Namespaces) {
		if !validRepoName(repo) {
			errs = append(errs, fmt.Sprintf("deploy.tenants.namespaces: %q is not owner/name", repo))
		}
		if ns := t.Namespaces[repo]; !isDNS1123Label(ns) {
			errs = append(errs, fmt.Sprintf("deploy.tenants.namespaces[%s]: %q must be a DNS-1123 label", repo, ns))
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// SecretAllowed reports whether repo's functions may mount Secret name.
func (t *Tenants) SecretAllowed(repo, name string) bool {
	for r, patterns := range t.Secrets {
		if !strings.EqualFold(r, repo) {
			continue
		}
		for _, p := range patterns {
			if ok, _ := path.Match(p, name); ok {
				return true
			}
		}
	}
	return false
}

// Namespace returns repo's own namespace, or "" for deploy.namespace.
func (t *Tenants) Namespace(repo string) string {
	for r, ns := range t.Namespaces {
		if strings.EqualFold(r, repo) {
			return ns
		}
	}
	return ""
}

func validRepoName(s string) bool {
	owner, name, ok := strings.Cut(s, "/")
	return ok && owner != "" && name != "" && !strings.Contains(name, "/")
}
