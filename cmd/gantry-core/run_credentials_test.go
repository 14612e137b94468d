package main

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gantry-dev/gantry/scanner/scantest"
)

// gitHTTPSServer serves the bare repositories under root over HTTPS with
// git's own smart-HTTP backend, to clients that send user:token; it returns
// the server and a PEM file of its certificate (for SSL_CERT_FILE).
func gitHTTPSServer(t *testing.T, root, user, token string) (*httptest.Server, string) {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git is needed to serve a repository over HTTPS: %v", err)
	}
	backend := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"}, Env: []string{
		"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "HOME=" + t.TempDir()}}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "credentials needed", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, caFile
}

// runGantryProcess runs gantry ARGS in a child process (environment: this
// one's plus env) to its end and returns its exit code, stdout and stderr.
func runGantryProcess(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestGantryProcess$")
	cmd.Env = append(append(os.Environ(), env...), processArgsEnv+"="+string(b))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	t.Fatalf("gantry %v: %v", args, err)
	return 0, "", ""
}

// `gantry run --repo https://user:token@host/…` (a CI job with a token in
// the URL): the checkout uses the credentials, but the token is in neither
// the progress log, nor the JSON result, nor the signed provenance, which
// names the repository without them.
func TestRunRepoURLCredentialsStayOut(t *testing.T) {
	t.Parallel()
	be := newBuildEnv(t)
	const user, token = "ci-bot", "ghp_s3cretTOKENinTheURL0123456789"
	image := be.registry + "/gantry-creds-" + be.uniq + "/hello"
	work := filepath.Join(be.dir, "src")
	sha := functionRepo(t, work, be.base, image, scantest.CleanFiles())
	root := filepath.Join(be.dir, "git")
	if out, err := exec.Command("git", "clone", "--quiet", "--bare", work, filepath.Join(root, "hello.git")).CombinedOutput(); err != nil {
		t.Fatalf("git clone --bare: %v\n%s", err, out)
	}
	srv, caFile := gitHTTPSServer(t, root, user, token)
	clean := srv.URL + "/hello.git"
	withCreds := strings.Replace(clean, "https://", "https://"+user+":"+token+"@", 1)

	keyPath, _ := cosignKeyFiles(t, be.dir)
	env := []string{"SSL_CERT_FILE=" + caFile, "GANTRY_SIGNER_KEY_FILE=" + keyPath, "COSIGN_PASSWORD=pw"}
	for _, kv := range be.env {
		if !strings.HasPrefix(kv, "GANTRY_SIGNER_KEY_SOURCE=") {
			env = append(env, kv)
		}
	}
	env = append(env, "GANTRY_SIGNER_KEY_SOURCE=file")

	// The server wants the credentials: without them the checkout fails.
	code, _, stderr := runGantryProcess(t, env, "run", "--repo", clean, "--commit", sha, "--no-deploy", "--output", "json")
	if code == exitOK || !strings.Contains(stderr, "checkout") {
		t.Fatalf("run without credentials: exit %d\n%s", code, stderr)
	}

	code, out, stderr := runGantryProcess(t, env, "run", "--repo", withCreds, "--commit", sha, "--name", "acme/hello",
		"--no-deploy", "--output", "json", "--log-level", "debug")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
	if strings.Contains(out, token) || strings.Contains(stderr, token) {
		t.Errorf("the token reached the output:\nstdout %s\nstderr %s", out, stderr)
	}
	var res runOutput
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if res.Run.CloneURL != clean || len(res.Functions) != 1 || !strings.HasPrefix(res.Functions[0].Image, image+"@sha256:") {
		t.Fatalf("run %+v functions %+v", res.Run, res.Functions)
	}

	// Every attestation of the image: none has the token; the provenance
	// names the repository without it.
	d, err := name.NewDigest(res.Functions[0].Image, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	att, err := name.NewTag(d.Context().Name()+":"+strings.Replace(d.DigestStr(), ":", "-", 1)+".att", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(att)
	if err != nil {
		t.Fatalf("attestations of %s: %v", d, err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var provenance int
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			Payload string `json:"payload"`
		}
		if err := json.Unmarshal(raw, &env); err != nil {
			t.Fatalf("attestation layer is no DSSE envelope: %v", err)
		}
		stmt, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(token)) || bytes.Contains(stmt, []byte(token)) {
			t.Errorf("an attestation carries the token:\n%s", stmt)
		}
		var s struct {
			PredicateType string `json:"predicateType"`
			Predicate     struct {
				BuildDefinition struct {
					ExternalParameters struct {
						Source struct {
							Repository string `json:"repository"`
						} `json:"source"`
					} `json:"externalParameters"`
				} `json:"buildDefinition"`
			} `json:"predicate"`
		}
		if err := json.Unmarshal(stmt, &s); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(s.PredicateType, "https://slsa.dev/provenance/") {
			provenance++
			if got := s.Predicate.BuildDefinition.ExternalParameters.Source.Repository; got != clean {
				t.Errorf("provenance repository %q, want %q", got, clean)
			}
		}
	}
	if provenance != 1 {
		t.Fatalf("%d provenance attestations among %d, want 1", provenance, len(layers))
	}
}

func TestRepoCredentials(t *testing.T) {
	for _, c := range []struct {
		in, url, user, token, err string
	}{
		{in: "https://u:tok@git.example/acme/r.git", url: "https://git.example/acme/r.git", user: "u", token: "tok"},
		{in: "https://tok@git.example/acme/r.git", url: "https://git.example/acme/r.git", token: "tok"},
		{in: "https://git.example/acme/r.git", url: "https://git.example/acme/r.git"},
		{in: "ssh://git@git.example/acme/r.git", url: "ssh://git@git.example/acme/r.git"},
		{in: "git@git.example:acme/r.git", url: "git@git.example:acme/r.git"},
		{in: "ssh://git:pw@git.example/acme/r.git", err: "password in a ssh URL"},
		{in: "http://u:pw@git.example/acme/r.git", err: "password in a http URL"},
		{in: "", url: ""},
	} {
		got, a, err := repoCredentials(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || strings.Contains(err.Error(), "pw") {
				t.Errorf("%q: error %v, want %q without the password", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.url {
			t.Errorf("%q: %q, %v; want %q", c.in, got, err, c.url)
			continue
		}
		if c.token == "" && a != nil || c.token != "" && (a == nil || a.Username != c.user || a.Token != c.token) {
			t.Errorf("%q: auth %+v, want user %q token %q", c.in, a, c.user, c.token)
		}
	}
}
