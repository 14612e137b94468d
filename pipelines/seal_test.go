package pipelines

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"
)

func sealedRun(t *testing.T, key ed25519.PrivateKey) *Run {
	t.Helper()
	r := &Run{
		ID: NewRunID(time.Now()), Repo: "acme/app", CloneURL: "https://github.com/acme/app.git",
		Ref: "refs/heads/main", Commit: strings.Repeat("a", 40), DeliveryID: "d-1",
		Pusher: "octocat", Title: "fix", State: StateQueued, CreatedAt: time.Now().UTC(),
	}
	NewSealer(key).seal(r)
	return r
}

func TestOriginCheck(t *testing.T) {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	other := ed25519.NewKeyFromSeed([]byte(strings.Repeat("x", 32)))
	pol := &OriginPolicy{
		Keys: []ed25519.PublicKey{other.Public().(ed25519.PublicKey), key.Public().(ed25519.PublicKey)},
		Allowed: func(repo, ref string) string {
			if strings.EqualFold(repo, "acme/app") && ref == "refs/heads/main" {
				return ""
			}
			return "not allowed"
		},
	}
	for _, tc := range []struct {
		name string
		mod  func(r *Run)
		want string // rejection reason, "" accepted
	}{
		{"honest", func(*Run) {}, ""},
		{"worker fields are not sealed", func(r *Run) {
			r.State, r.Attempts, r.Outputs, r.Lease = StateRunning, 3, map[string]string{"a": "b"}, &Lease{Holder: "x"}
		}, ""},
		{"unsealed", func(r *Run) { r.Seal = nil }, "unsealed"},
		{"clone URL rewritten", func(r *Run) { r.CloneURL = "https://evil.example/x.git" }, "bad_seal"},
		{"commit rewritten", func(r *Run) { r.Commit = strings.Repeat("b", 40) }, "bad_seal"},
		{"ref rewritten", func(r *Run) { r.Ref = "refs/heads/dev" }, "bad_seal"},
		{"repo rewritten", func(r *Run) { r.Repo = "ACME/app" }, "bad_seal"},
		{"id rewritten", func(r *Run) { r.ID = NewRunID(time.Now().Add(time.Hour)) }, "bad_seal"},
		{"time rewritten", func(r *Run) { r.CreatedAt = r.CreatedAt.Add(time.Nanosecond) }, "bad_seal"},
		{"delivery rewritten", func(r *Run) { r.DeliveryID = "d-2" }, "bad_seal"},
		{"title rewritten", func(r *Run) { r.Title = "x" }, "bad_seal"},
		{"signature truncated", func(r *Run) { r.Seal.Sig = r.Seal.Sig[:10] }, "bad_seal"},
		{"unknown key id", func(r *Run) { r.Seal.KeyID = "0011223344556677" }, "unknown_key"},
		{"sealed by another key", func(r *Run) {
			NewSealer(ed25519.NewKeyFromSeed([]byte(strings.Repeat("z", 32)))).seal(r)
		}, "unknown_key"},
		{"forged key id with foreign signature", func(r *Run) {
			id := r.Seal.KeyID
			NewSealer(ed25519.NewKeyFromSeed([]byte(strings.Repeat("z", 32)))).seal(r)
			r.Seal.KeyID = id
		}, "bad_seal"},
		{"sealed but not allowed", func(r *Run) { r.Ref = "refs/heads/dev"; NewSealer(key).seal(r) }, "not_allowed"},
		{"sealed foreign clone URL", func(r *Run) { r.CloneURL = "https://evil.example/acme/app.git"; NewSealer(key).seal(r) }, "clone_url"},
		{"sealed by rotated key", func(r *Run) { NewSealer(other).seal(r) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sealedRun(t, key)
			tc.mod(r)
			got := pol.check(r)
			switch {
			case tc.want == "" && got != nil:
				t.Fatalf("rejected: %s: %s", got.reason, got.detail)
			case tc.want != "" && (got == nil || got.reason != tc.want):
				t.Fatalf("got %+v, want rejection %s", got, tc.want)
			}
		})
	}
}

func TestCheckCloneURL(t *testing.T) {
	for _, tc := range []struct {
		host, repo, url string
		ok              bool
	}{
		{"", "acme/app", "https://github.com/acme/app.git", true},
		{"", "acme/app", "https://github.com/acme/app", true},
		{"", "acme/app", "https://GitHub.com/ACME/App.GIT", false}, // .GIT is not the suffix GitHub serves
		{"", "acme/app", "https://GitHub.com/ACME/App.git", true},
		{"", "Acme/App", "https://github.com/acme/app.git", true},
		{"ghe.example", "acme/app", "https://ghe.example/acme/app.git", true},
		{"ghe.example", "acme/app", "https://github.com/acme/app.git", false},
		{"", "acme/app", "", false},
		{"", "acme/app", "http://github.com/acme/app.git", false},
		{"", "acme/app", "ssh://git@github.com/acme/app.git", false},
		{"", "acme/app", "git@github.com:acme/app.git", false},
		{"", "acme/app", "file:///tmp/acme/app", false},
		{"", "acme/app", "/tmp/acme/app", false},
		{"", "acme/app", "https://evil.example/acme/app.git", false},
		{"", "acme/app", "https://github.com.evil.example/acme/app.git", false},
		{"", "acme/app", "https://github.com:8443/acme/app.git", false},
		{"", "acme/app", "https://token@github.com/acme/app.git", false},
		{"", "acme/app", "https://github.com/acme/other.git", false},
		{"", "acme/app", "https://github.com/evil/app.git", false},
		{"", "acme/app", "https://github.com/acme/app.git?x=1", false},
		{"", "acme/app", "https://github.com/acme/app.git#x", false},
		{"", "acme/app", "https://github.com/acme/app/../../evil/x.git", false},
		{"", "acme/app", "https://github.com/acme%2Fapp.git", false},
		{"", "acme/app", "https://github.com//acme/app.git", false},
		{"", "acme/app/x", "https://github.com/acme/app/x.git", false},
	} {
		err := CheckCloneURL(tc.host, tc.repo, tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("CheckCloneURL(%q, %q, %q) = %v, want ok %v", tc.host, tc.repo, tc.url, err, tc.ok)
		}
	}
}

func TestKeyPEMRoundTrip(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParsePrivateKey(MarshalPrivateKey(priv))
	if err != nil || !k.Equal(priv) {
		t.Fatalf("private key round trip: %v", err)
	}
	p, err := ParsePublicKey(MarshalPublicKey(priv.Public().(ed25519.PublicKey)))
	if err != nil || !p.Equal(priv.Public()) {
		t.Fatalf("public key round trip: %v", err)
	}
	if _, err := ParsePublicKey(MarshalPrivateKey(priv)); err == nil {
		t.Fatal("a private key was accepted as a public key")
	}
}

// FuzzCheckCloneURL: an accepted URL always names the repo on the host.
func FuzzCheckCloneURL(f *testing.F) {
	f.Add("acme/app", "https://github.com/acme/app.git")
	f.Add("acme/app", "https://github.com@evil/acme/app.git")
	f.Fuzz(func(t *testing.T, repo, u string) {
		if CheckCloneURL("github.com", repo, u) != nil {
			return
		}
		l := strings.ToLower(u)
		want := "https://github.com/" + strings.ToLower(repo)
		if l != want && l != want+".git" {
			t.Fatalf("accepted %q for %q", u, repo)
		}
	})
}
