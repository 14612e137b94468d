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
