package scanner_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/scanner"
	"github.com/gantry-dev/gantry/scanner/gate"
	"github.com/gantry-dev/gantry/scanner/report"
	"github.com/gantry-dev/gantry/scanner/scantest"
)

// unreachableDB is where server-mode scanners are told the DB lives: the
// scanner must never go there, the server matches against its own DB.
const unreachableDB = "127.0.0.1:1/not-used-in-server-mode/trivy-db:2"

// TestServerModeMatchesEmbedded scans the planted and clean images through
// a real `trivy server` (its DB downloaded from the test registry) and
// in-process, and requires the same findings, packages and verdicts.
func TestServerModeMatchesEmbedded(t *testing.T) {
	env, fx := setup(t)
	srv := scantest.StartTrivyServer(t, env.Trivy, fx.DBRepository)
	tokenFile := writeFile(t, "token", srv.Token+"\n")
	ctx := context.Background()

	embedded := map[string]*scanner.Result{}
	s := newScanner(t, env, func(c *config.Scanner) { c.DBRepositories = []string{fx.DBRepository} }, nil)
	for _, ref := range []string{fx.Vulnerable, fx.Clean} {
		res, err := s.Scan(ctx, ref)
		if err != nil {
			t.Fatalf("embedded scan of %s: %v", ref, err)
		}
		embedded[ref] = res
	}
	_ = s.Close()

	remote := newScanner(t, env, func(c *config.Scanner) {
		c.Server, c.ServerTokenFile = srv.URL, tokenFile
		c.DBRepositories = []string{unreachableDB}
	}, nil)
	if remote.Mode() != scanner.ModeServer {
		t.Fatalf("mode %q, want %q", remote.Mode(), scanner.ModeServer)
	}
	policy := gate.Policy{Severities: []string{"CRITICAL", "HIGH"}, OnlyFixed: true}
	for _, c := range []struct {
		name     string
		ref      string
		findings int
		pass     bool
	}{
		{"vulnerable", fx.Vulnerable, 4, false},
		{"clean", fx.Clean, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := remote.Scan(ctx, c.ref)
			if err != nil {
				t.Fatalf("server-mode scan: %v\nserver log %s", err, srv.LogFile)
			}
			got, want := res.Report, embedded[c.ref].Report
			if got.Scanner.Mode != scanner.ModeServer || got.Scanner.Version != scanner.TrivyVersion() {
				t.Errorf("scanner %+v", got.Scanner)
			}
			if got.DB != (report.DBInfo{}) {
				t.Errorf("server mode reports a local DB: %+v", got.DB)
			}
			if len(got.Findings) != c.findings {
				t.Errorf("%d findings, want %d: %+v", len(got.Findings), c.findings, got.Findings)
			}
			if !reflect.DeepEqual(got.Findings, want.Findings) {
				t.Errorf("findings differ from embedded mode:\nserver   %+v\nembedded %+v", got.Findings, want.Findings)
			}
			if !reflect.DeepEqual(got.Image, want.Image) || got.Packages != want.Packages {
				t.Errorf("image %+v (%d packages), embedded %+v (%d packages)", got.Image, got.Packages, want.Image, want.Packages)
			}
			gv, wv := gate.Evaluate(got, policy), gate.Evaluate(want, policy)
			if gv.Pass != c.pass || !reflect.DeepEqual(gv, wv) {
				t.Errorf("verdict %+v, embedded %+v, want pass=%v", gv, wv, c.pass)
			}
			// The SBOM comes from the server-mode analysis too.
			var sbom bytes.Buffer
			if err := res.WriteCycloneDX(ctx, &sbom); err != nil {
				t.Fatal(err)
			}
			for _, f := range got.Findings {
				if !bytes.Contains(sbom.Bytes(), []byte(`"id": "`+f.ID+`"`)) {
					t.Errorf("SBOM lacks %s", f.ID)
				}
			}
			if !bytes.Contains(sbom.Bytes(), []byte(`"name": "base-files"`)) {
				t.Errorf("SBOM lacks the base-files package")
			}
		})
	}
}

// TestServerModeFailsClosed: a missing or wrong token and a server that is
// down are errors that name the server; nothing passes without a scan.
func TestServerModeFailsClosed(t *testing.T) {
	env, fx := setup(t)
	srv := scantest.StartTrivyServer(t, env.Trivy, fx.DBRepository)
	wrongToken := "wrong-" + scantest.Unique()
	nothingListening, err := scantest.FreeLoopbackURL()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		server    string
		tokenFile string
		wantErr   []string
		refused   bool // the server refused the token
	}{
		{"wrong token", srv.URL, writeFile(t, "wrong", wrongToken), []string{"invalid token", "scanner.serverTokenFile must hold the server's --token"}, true},
		{"no token", srv.URL, "", []string{"invalid token", "scanner.serverTokenFile must hold the server's --token"}, true},
		{"nothing listening", nothingListening, writeFile(t, "token", srv.Token), []string{"connection refused"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newScanner(t, env, func(cfg *config.Scanner) {
				cfg.Server, cfg.ServerTokenFile = c.server, c.tokenFile
				cfg.DBRepositories = []string{unreachableDB}
			}, nil)
			res, err := s.Scan(context.Background(), fx.Vulnerable)
			if err == nil {
				t.Fatalf("scan succeeded (%d findings), want an error", len(res.Report.Findings))
			}
			assertServerError(t, err, c.server, append(c.wantErr, "scanner.server")...)
			if !c.refused && strings.Contains(err.Error(), "refused the token") {
				t.Errorf("token hint on an error that is not about the token: %v", err)
			}
			for _, secret := range []string{srv.Token, wrongToken} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error reveals a token: %v", err)
				}
			}
		})
	}

	t.Run("server stopped", func(t *testing.T) {
		s := newScanner(t, env, func(cfg *config.Scanner) {
			cfg.Server, cfg.ServerTokenFile = srv.URL, writeFile(t, "token", srv.Token)
			cfg.DBRepositories = []string{unreachableDB}
		}, nil)
		if _, err := s.Scan(context.Background(), fx.Clean); err != nil {
			t.Fatalf("scan while the server is up: %v", err)
		}
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
		_, err := s.Scan(context.Background(), fx.Vulnerable)
		if err == nil {
			t.Fatal("scan with the server stopped succeeded")
		}
		assertServerError(t, err, srv.URL, "scanner.server", "connection refused")
	})
}

func assertServerError(t *testing.T, err error, server string, want ...string) {
	t.Helper()
	if errors.Is(err, scanner.ErrDBUnavailable) || errors.Is(err, scanner.ErrDBStale) {
		t.Errorf("server-mode failure reported as a local DB failure: %v", err)
	}
	for _, sub := range append([]string{server}, want...) {
		if !strings.Contains(err.Error(), sub) {
			t.Errorf("error %q does not mention %q", err, sub)
		}
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
