package webhooks

import (
	"fmt"
	"path"
	"strings"
)

// Repo allows pushes of one repository to start runs.
type Repo struct {
	// Name is "owner/name" (compared without regard to case, as GitHub does).
	Name string
	// Branches are glob patterns (path.Match: "main", "release/*") of
	// branches whose pushes start runs.
	Branches []string
	// Tags are glob patterns of tags whose pushes start runs; none by default.
	Tags []string
}

// Validate checks the name and that every pattern is a valid glob.
func (r Repo) Validate() error {
	owner, name, ok := strings.Cut(r.Name, "/")
	if !ok || !validRepoPart(owner) || !validRepoPart(name) {
		return fmt.Errorf("repo %q: want owner/name", r.Name)
	}
	for _, p := range append(append([]string(nil), r.Branches...), r.Tags...) {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			return fmt.Errorf("repo %s: pattern %q is not a valid glob", r.Name, p)
		}
	}
	return nil
}

func validRepoPart(s string) bool {
	if s == "" || len(s) > 100 || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

// skipMarkers in the head commit message skip the run, as they skip
// GitHub Actions workflows.
var skipMarkers = []string{"[skip ci]", "[ci skip]", "[no ci]", "[skip actions]", "[actions skip]", "[skip gantry]", "[gantry skip]"}

func hasSkipMarker(msg string) (string, bool) {
	lower := strings.ToLower(msg)
	for _, m := range skipMarkers {
		if strings.Contains(lower, m) {
			return m, true
		}
	}
	return "", false
}

// refReason says why a push of ref does not start a run of r ("" if it does).
func (r Repo) refReason(ref string) string {
	switch {
	case strings.HasPrefix(ref, "refs/heads/"):
		branch := strings.TrimPrefix(ref, "refs/heads/")
		if !matchAny(r.Branches, branch) {
			return fmt.Sprintf("branch %s is not configured for %s (branches: %s)", branch, r.Name, strings.Join(r.Branches, ", "))
		}
	case strings.HasPrefix(ref, "refs/tags/"):
		tag := strings.TrimPrefix(ref, "refs/tags/")
		if !matchAny(r.Tags, tag) {
			return fmt.Sprintf("tag pushes (%s) are not configured for %s", tag, r.Name)
		}
	default:
		return fmt.Sprintf("ref %s is neither a branch nor a tag", ref)
	}
	return ""
}

// AllowList is the receiver's allow-list (webhooks.repos) for a worker to
// re-check runs with, by the same rules the receiver applies to pushes.
type AllowList map[string]Repo

// NewAllowList validates repos and indexes them by lower-cased name.
func NewAllowList(repos []Repo) (AllowList, error) {
	a := AllowList{}
	for _, r := range repos {
		if err := r.Validate(); err != nil {
			return nil, err
		}
		a[strings.ToLower(r.Name)] = r
	}
	return a, nil
}

// Check says why a run of repo's ref is not allowed ("" if it is).
func (a AllowList) Check(repo, ref string) string {
	r, ok := a[strings.ToLower(repo)]
	if !ok {
		return fmt.Sprintf("repository %s is not configured (webhooks.repos)", repo)
	}
	return r.refReason(ref)
}
