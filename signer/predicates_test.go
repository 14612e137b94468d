package signer

import (
	"encoding/json"
	"strings"
	"testing"
)

// A clone URL with a token in it never reaches the (public) provenance.
func TestProvenanceDropsURLCredentials(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://ci:ghp_tok@github.com/acme/fn.git", "https://github.com/acme/fn.git"},
		{"https://ghp_tok@github.com/acme/fn", "https://github.com/acme/fn"},
		{"https://github.com/acme/fn", "https://github.com/acme/fn"},
		{"git@github.com:acme/fn.git", "git@github.com:acme/fn.git"},
		{"/home/dev/fn", "/home/dev/fn"},
	} {
		b, err := Provenance{Repository: c.in, Commit: strings.Repeat("a", 40), Ref: "refs/heads/main", BuilderID: "https://gantry.test"}.Predicate()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "ghp_tok") {
			t.Errorf("%s: token in the provenance: %s", c.in, b)
		}
		var p struct {
			BuildDefinition struct {
				ExternalParameters struct {
					Source struct{ Repository string } `json:"source"`
				} `json:"externalParameters"`
				ResolvedDependencies []struct{ URI string } `json:"resolvedDependencies"`
			} `json:"buildDefinition"`
		}
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		if got := p.BuildDefinition.ExternalParameters.Source.Repository; got != c.want {
			t.Errorf("%s: repository %q, want %q", c.in, got, c.want)
		}
		if got := p.BuildDefinition.ResolvedDependencies[0].URI; got != "git+"+c.want+"@refs/heads/main" {
			t.Errorf("%s: dependency %q", c.in, got)
		}
	}
}
