package config

import "fmt"

// RepoIgnores bounds what a repository's own scan ignore file (its
// gantry.yaml scan.ignoreFile) may waive: a repository is a tenant, and
// its ignores are its own word about its own findings. The server's
// scanner.ignoreFile is not bounded by these.
type RepoIgnores struct {
	// Allowed accepts repository ignore files at all. False: a repository
	// that names one fails its scan, and only the server's
	// scanner.ignoreFile can waive findings.
	Allowed bool `yaml:"allowed"`
	// MaxExpiryDays is how far after the scan an entry's expiry may be.
	MaxExpiryDays int `yaml:"maxExpiryDays"`
	// AllowPackageWildcards accepts pkg:NAME entries, which waive every
	// finding (present and future) in a package.
	AllowPackageWildcards bool `yaml:"allowPackageWildcards"`
}

// DefaultRepoIgnores: repository ignores are accepted for at most 90 days
// and per vulnerability, never for a whole package.
func DefaultRepoIgnores() RepoIgnores {
	return RepoIgnores{Allowed: true, MaxExpiryDays: 90}
}

// Validate checks the bound.
func (r RepoIgnores) Validate() error {
	if r.Allowed && (r.MaxExpiryDays < 1 || r.MaxExpiryDays > 3660) {
		return fmt.Errorf("scanner.repoIgnores.maxExpiryDays must be between 1 and 3660 when repository ignores are allowed, got %d", r.MaxExpiryDays)
	}
	return nil
}
