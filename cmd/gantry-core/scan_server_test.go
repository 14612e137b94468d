package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/scanner"
	"github.com/gantry-dev/gantry/scanner/report"
	"github.com/gantry-dev/gantry/scanner/scantest"
)

// TestScanCommandTrivyServer runs `gantry scan --trivy-server` against a
// real `trivy server` whose DB comes from the test registry. The local DB
// repository is unreachable: server mode must not need it.
func TestScanCommandTrivyServer(t *testing.T) {
	te := testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fx, err := scantest.Setup(ctx, te.BuildkitAddr, te.Registry, te.BaseImage, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := scantest.StartTrivyServer(t, te.Trivy, fx.DBRepository)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodToken, badToken := write("token", srv.Token+"\n"), write("bad-token", "not-the-token")
	down, err := scantest.FreeLoopbackURL()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"GANTRY_REGISTRY_INSECURE=" + te.Registry,
		"GANTRY_SCANNER_DB_REPOSITORIES=127.0.0.1:1/not-used/trivy-db:2",
		"GANTRY_SCANNER_JAVA_DB_REPOSITORIES=",
		"GANTRY_SCANNER_CACHE_DIR=" + filepath.Join(dir, "cache"),
	}
	tokenEnv := func(path string) []string { return []string{"GANTRY_SCANNER_SERVER_TOKEN_FILE=" + path} }

	cases := []struct {
		name       string
		args       []string
		env        []string
		wantCode   int
		wantOut    []string
		wantStderr []string
	}{
		{"vulnerable fails the gate", []string{"scan", "--trivy-server", srv.URL, fx.Vulnerable}, tokenEnv(goodToken), exitPolicy,
			[]string{"Gate: FAIL — 2 findings fail the gate (CRITICAL,HIGH with a fix available)", "openssl 3.0.11-1~deb12u2 (debian)", scantest.FixableHigh, scantest.NPMHigh},
			[]string{"scan gate failed"}},
		{"clean passes", []string{"scan", "--trivy-server", srv.URL, fx.Clean}, tokenEnv(goodToken), exitOK,
			[]string{"Gate: PASS", "0 findings"}, nil},
		{"server from the environment", []string{"scan", fx.Clean}, append(tokenEnv(goodToken), "GANTRY_SCANNER_SERVER="+srv.URL), exitOK,
			[]string{"Gate: PASS"}, nil},
		{"wrong token", []string{"scan", "--trivy-server", srv.URL, fx.Vulnerable}, tokenEnv(badToken), exitFailure,
			nil, []string{srv.URL, "invalid token", "scanner.serverTokenFile"}},
		{"no token", []string{"scan", "--trivy-server", srv.URL, fx.Vulnerable}, nil, exitFailure,
			nil, []string{srv.URL, "invalid token"}},
		{"server down", []string{"scan", "--trivy-server", down, fx.Vulnerable}, tokenEnv(goodToken), exitFailure,
			nil, []string{down, "scanner.server", "connection refused"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, stderr := gantry(t, append(append([]string{}, env...), c.env...), c.args...)
			if code != c.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s\nserver log: %s", code, c.wantCode, out, stderr, srv.LogFile)
			}
			for _, w := range c.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range c.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(out+stderr, srv.Token) || strings.Contains(out+stderr, "not-the-token") {
				t.Errorf("a token was printed:\n%s\n%s", out, stderr)
			}
		})
	}

	t.Run("json names the server mode", func(t *testing.T) {
		code, out, stderr := gantry(t, append(env, tokenEnv(goodToken)...), "scan", "-o", "json", "--trivy-server", srv.URL, fx.Vulnerable)
		if code != exitPolicy {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		doc, err := report.ReadJSON(strings.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		if doc.Scanner.Mode != scanner.ModeServer || doc.DB != (report.DBInfo{}) || doc.Verdict.Failed != 2 || len(doc.Findings) != 4 {
			t.Errorf("scanner %+v db %+v verdict %+v, %d findings", doc.Scanner, doc.DB, doc.Verdict, len(doc.Findings))
		}
	})
}
