package config

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Scanner configures vulnerability scanning (`gantry scan` and the pipeline's
// scan stage): where Trivy's vulnerability DB comes from and how fresh it must
// be, and the gate that decides pass or fail. Defaults are the secure choice:
// fail on CRITICAL and HIGH findings that have a fix, refuse a DB older than
// three days.
type Scanner struct {
	// Server is the URL of a Trivy server (`trivy server`) shared by many
	// workers. Empty: Trivy runs in-process with its DB in CacheDir.
	Server string `yaml:"server"`
	// ServerTokenFile is a file holding the Trivy server's token (sent as
	// the Trivy-Token header). Empty: no token.
	ServerTokenFile string `yaml:"serverTokenFile"`
	// DBRepositories are OCI repositories of the vulnerability DB, tried in
	// order (an air-gapped site lists its mirror here).
	DBRepositories []string `yaml:"dbRepositories"`
	// JavaDBRepositories are OCI repositories of Trivy's Java DB, fetched
	// only when an image contains Java archives. Empty: Java archives are
	// not analysed.
	JavaDBRepositories []string `yaml:"javaDbRepositories"`
	// CacheDir holds the DB and Trivy's layer cache. Empty: the user cache
	// directory (e.g. ~/.cache/gantry/trivy).
	CacheDir string `yaml:"cacheDir"`
	// DBRefreshInterval is how long a downloaded DB is used before the
	// next scan (or the background refresher) fetches a newer one.
	DBRefreshInterval time.Duration `yaml:"dbRefreshInterval"`
	// DBMaxAge is how old (since it was built) a DB may be before scans
	// refuse to run: a stale DB misses new vulnerabilities.
	DBMaxAge time.Duration `yaml:"dbMaxAge"`
	// Severities fail the gate.
	Severities []string `yaml:"severities" allowed:"CRITICAL,HIGH,MEDIUM,LOW,UNKNOWN"`
	// OnlyFixed fails the gate only on findings with a fixed version
	// available; false fails on unfixed findings too.
	OnlyFixed bool `yaml:"onlyFixed"`
	// IgnoreFile is a YAML file of accepted findings (id, reason, expiry).
	IgnoreFile string `yaml:"ignoreFile"`
	// Timeout bounds one scan, image download included.
	Timeout time.Duration `yaml:"timeout"`
	// RepoIgnores bounds the ignore files of repositories.
	RepoIgnores RepoIgnores `yaml:"repoIgnores"`
}

// DefaultScanner returns the scanner section's defaults.
func DefaultScanner() Scanner {
	return Scanner{
		DBRepositories:     []string{"mirror.gcr.io/aquasec/trivy-db:2", "ghcr.io/aquasecurity/trivy-db:2"},
		JavaDBRepositories: []string{"mirror.gcr.io/aquasec/trivy-java-db:1", "ghcr.io/aquasecurity/trivy-java-db:1"},
		DBRefreshInterval:  12 * time.Hour,
		DBMaxAge:           72 * time.Hour,
		Severities:         []string{"CRITICAL", "HIGH"},
		OnlyFixed:          true,
		Timeout:            10 * time.Minute,
		RepoIgnores:        DefaultRepoIgnores(),
	}
}

// Validate checks the fields that depend on each other.
func (s *Scanner) Validate() error {
	var errs []error
	if s.Server != "" {
		u, err := url.Parse(s.Server)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("scanner.server: %q must be an http(s) URL such as https://trivy.example:4954", s.Server))
		}
	} else if len(s.DBRepositories) == 0 {
		errs = append(errs, errors.New("scanner.dbRepositories: at least one repository is needed when scanner.server is empty"))
	}
	if s.ServerTokenFile != "" && s.Server == "" {
		errs = append(errs, errors.New("scanner.serverTokenFile is set but scanner.server is empty"))
	}
	if len(s.Severities) == 0 {
		errs = append(errs, errors.New("scanner.severities: list at least one severity (e.g. CRITICAL,HIGH)"))
	}
	if s.DBRefreshInterval <= 0 {
		errs = append(errs, fmt.Errorf("scanner.dbRefreshInterval must be positive, got %s", s.DBRefreshInterval))
	}
	if s.DBMaxAge <= 0 {
		errs = append(errs, fmt.Errorf("scanner.dbMaxAge must be positive, got %s", s.DBMaxAge))
	}
	if s.DBRefreshInterval > 0 && s.DBMaxAge > 0 && s.DBRefreshInterval >= s.DBMaxAge {
		errs = append(errs, fmt.Errorf("scanner.dbRefreshInterval (%s) must be shorter than scanner.dbMaxAge (%s), or the DB goes stale before it is refreshed",
			s.DBRefreshInterval, s.DBMaxAge))
	}
	if s.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("scanner.timeout must be positive, got %s", s.Timeout))
	}
	if err := s.RepoIgnores.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
