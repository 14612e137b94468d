package gate

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// RepoPolicy is the server's bound on a repository's own ignore file
// (config scanner.repoIgnores): whether one is accepted, how far ahead its
// expiries may be, and whether it may waive whole packages.
type RepoPolicy struct {
	Allowed               bool
	MaxExpiryDays         int
	AllowPackageWildcards bool
}

// CheckRepoIgnores refuses the entries of a repository ignore file (file
// names it in messages) that break p, judged at now. Every broken entry is
// named with its line, its id and the rule it breaks.
func (p RepoPolicy) CheckRepoIgnores(file string, igs []Ignore, now time.Time) error {
	if len(igs) == 0 {
		return nil
	}
	if !p.Allowed {
		return fmt.Errorf("the server does not accept repository ignore files (scanner.repoIgnores.allowed: false), and %s has %d entries: remove scan.ignoreFile from gantry.yaml, or ask the operators to add reviewed entries to the server's scanner.ignoreFile", file, len(igs))
	}
	today := now.UTC().Truncate(24 * time.Hour)
	limit := today.AddDate(0, 0, p.MaxExpiryDays)
	var errs []string
	for _, ig := range igs {
		if name, ok := ig.PackageOnly(); ok && !p.AllowPackageWildcards {
			errs = append(errs, fmt.Sprintf("%s line %d: %s waives every finding in package %s; the server refuses package wildcards in repository ignore files (scanner.repoIgnores.allowPackageWildcards: false): list each vulnerability id instead",
				file, ig.Line, ig.ID, name))
		}
		if ig.Expires.After(limit) {
			errs = append(errs, fmt.Sprintf("%s line %d: %s expires %s, more than %d days after today (%s), the server's limit (scanner.repoIgnores.maxExpiryDays): set expires to %s or earlier",
				file, ig.Line, ig.ID, ig.ExpiresString(), p.MaxExpiryDays, today.Format(time.DateOnly), limit.Format(time.DateOnly)))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
