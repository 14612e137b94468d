package scanner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/scanner"
	"github.com/gantry-dev/gantry/scanner/gate"
	"github.com/gantry-dev/gantry/scanner/report"
	"github.com/gantry-dev/gantry/scanner/scantest"
)

// The tests in this package share one process-wide Trivy DB handle: none
// of them is parallel, and each closes its scanner.

var (
	fixtureOnce sync.Once
	fixture     *scantest.Fixture
	fixtureErr  error
)

func setup(t *testing.T) (*testenv.Env, *scantest.Fixture) {
	t.Helper()
	env := testenv.Require(t)
	fixtureOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		fixture, fixtureErr = scantest.Setup(ctx, env.BuildkitAddr, env.Registry, env.BaseImage, time.Now())
	})
	if fixtureErr != nil {
		t.Fatalf("test fixture: %v", fixtureErr)
	}
	return env, fixture
}

func newScanner(t *testing.T, env *testenv.Env, mutate func(*config.Scanner), now func() time.Time) *scanner.Scanner {
	t.Helper()
	reg, err := oci.New(config.Registry{Insecure: []string{env.Registry, "127.0.0.1:1"}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.DefaultScanner()
	cfg.CacheDir = t.TempDir()
	cfg.JavaDBRepositories = nil
	cfg.Timeout = 2 * time.Minute
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := scanner.New(cfg, scanner.Options{Registry: reg, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestScanPlantedAndClean(t *testing.T) {
	env, fx := setup(t)
	s := newScanner(t, env, func(c *config.Scanner) { c.DBRepositories = []string{fx.DBRepository} }, nil)
	ctx := context.Background()

	res, err := s.Scan(ctx, fx.Vulnerable)
	if err != nil {
		t.Fatal(err)
	}
	rep := res.Report
	if rep.Image.Ref != fx.Vulnerable || !strings.HasPrefix(rep.Image.Digest, "sha256:") || rep.Image.ConfigDigest == "" {
		t.Errorf("image %+v, want ref %s", rep.Image, fx.Vulnerable)
	}
	if rep.Image.OS == nil || rep.Image.OS.Family != "debian" || rep.Image.OS.Name != "12.4" {
		t.Errorf("OS %+v", rep.Image.OS)
	}
	if rep.Scanner.Mode != scanner.ModeEmbedded || rep.Scanner.Version != scanner.TrivyVersion() || rep.DB.Repository != fx.DBRepository || rep.DB.UpdatedAt.IsZero() {
		t.Errorf("scanner %+v db %+v", rep.Scanner, rep.DB)
	}
	want := map[string]report.Finding{
		scantest.FixableHigh:     {Package: "openssl", Severity: "HIGH", FixedVersion: scantest.OpenSSLFixedVersion, InstalledVersion: "3.0.11-1~deb12u2", Class: "os-pkgs", PackageType: "debian"},
		scantest.UnfixedCritical: {Package: "openssl", Severity: "CRITICAL", Class: "os-pkgs", PackageType: "debian"},
		scantest.FixableMedium:   {Package: "zlib1g", Severity: "MEDIUM", FixedVersion: "1:1.3.1-1", Class: "os-pkgs"},
		scantest.NPMHigh:         {Package: "left-pad", Severity: "HIGH", FixedVersion: "1.3.0", InstalledVersion: "1.0.0", Class: "lang-pkgs", PackageType: "node-pkg"},
	}
	got := map[string]report.Finding{}
	for _, f := range rep.Findings {
		got[f.ID] = f
	}
	if len(rep.Findings) != len(want) {
		t.Errorf("%d findings, want %d: %+v", len(rep.Findings), len(want), rep.Findings)
	}
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("planted %s not found", id)
			continue
		}
		if g.Package != w.Package || g.Severity != w.Severity || g.FixedVersion != w.FixedVersion || g.Class != w.Class ||
			(w.InstalledVersion != "" && g.InstalledVersion != w.InstalledVersion) || (w.PackageType != "" && g.PackageType != w.PackageType) {
			t.Errorf("%s: got %+v, want %+v", id, g, w)
		}
		if g.Title == "" {
			t.Errorf("%s: no title", id)
		}
	}
	if got[scantest.NPMHigh].Target != "usr/lib/node_modules/left-pad/package.json" {
		t.Errorf("npm finding target %q", got[scantest.NPMHigh].Target)
	}
	if rep.Packages < 4 {
		t.Errorf("%d packages, want at least 4", rep.Packages)
	}
	if rep.Findings[0].Severity != "CRITICAL" {
		t.Errorf("findings not sorted by severity: first is %+v", rep.Findings[0])
	}

	// The default gate fails on the two fixable HIGHs only.
	v := gate.Evaluate(rep, gate.Policy{Severities: []string{"CRITICAL", "HIGH"}, OnlyFixed: true})
	if v.Pass || v.Failed != 2 {
		t.Errorf("verdict %+v", v)
	}
	for i, f := range rep.Findings {
		wantFail := f.ID == scantest.FixableHigh || f.ID == scantest.NPMHigh
		if (v.Decisions[i].Outcome == report.Fail) != wantFail {
			t.Errorf("%s: %s (%s)", f.ID, v.Decisions[i].Outcome, v.Decisions[i].Reason)
		}
	}

	// The SBOM comes from the same scan.
	var sbom bytes.Buffer
	if err := res.WriteCycloneDX(ctx, &sbom); err != nil {
		t.Fatal(err)
	}
	var bom struct {
		BOMFormat   string `json:"bomFormat"`
		SpecVersion string `json:"specVersion"`
		Metadata    struct {
			Component struct {
				Name string `json:"name"`
			} `json:"component"`
		} `json:"metadata"`
		Components []struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			PURL    string `json:"purl"`
		} `json:"components"`
		Vulnerabilities []struct {
			ID string `json:"id"`
		} `json:"vulnerabilities"`
	}
	if err := json.Unmarshal(sbom.Bytes(), &bom); err != nil {
		t.Fatalf("SBOM is not JSON: %v", err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion == "" {
		t.Errorf("bomFormat %q specVersion %q", bom.BOMFormat, bom.SpecVersion)
	}
	var comps []string
	for _, c := range bom.Components {
		comps = append(comps, c.Name+"@"+c.Version)
	}
	for _, wantComp := range []string{"openssl@3.0.11-1~deb12u2", "left-pad@1.0.0", "base-files@12.4+deb12u4"} {
		if !slices.Contains(comps, wantComp) {
			t.Errorf("SBOM lacks %s: %v", wantComp, comps)
		}
	}
	var vulnIDs []string
	for _, v := range bom.Vulnerabilities {
		vulnIDs = append(vulnIDs, v.ID)
	}
	if !slices.Contains(vulnIDs, scantest.FixableHigh) || !slices.Contains(vulnIDs, scantest.NPMHigh) {
		t.Errorf("SBOM vulnerabilities %v", vulnIDs)
	}

	// A clean image passes.
	clean, err := s.Scan(ctx, fx.Clean)
	if err != nil {
		t.Fatal(err)
	}
	if len(clean.Report.Findings) != 0 {
		t.Errorf("clean image has findings: %+v", clean.Report.Findings)
	}
	if v := gate.Evaluate(clean.Report, gate.Policy{Severities: []string{"CRITICAL", "HIGH"}, OnlyFixed: false}); !v.Pass {
		t.Errorf("clean image fails the gate: %s", v.Summary)
	}

	// A tag is resolved to the digest it points at; the DB is not
	// downloaded again.
	before := s.DBStatus()
	byTag, err := s.Scan(ctx, strings.Split(fx.Vulnerable, "@")[0]+":1")
	if err != nil {
		t.Fatal(err)
	}
	if byTag.Report.Image.Ref != fx.Vulnerable {
		t.Errorf("tag resolved to %s, want %s", byTag.Report.Image.Ref, fx.Vulnerable)
	}
	if after := s.DBStatus(); after != before {
		t.Errorf("DB changed between scans: %+v then %+v", before, after)
	}
	dirs, _ := filepath.Glob(filepath.Join(before.Dir, "..", "db-*"))
	if len(dirs) != 1 {
		t.Errorf("DB downloaded %d times: %v", len(dirs), dirs)
	}
}

func TestConcurrentScansShareOneDB(t *testing.T) {
	env, fx := setup(t)
	s := newScanner(t, env, func(c *config.Scanner) { c.DBRepositories = []string{fx.DBRepository} }, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := fx.Vulnerable
			if i%2 == 1 {
				ref = fx.Clean
			}
			res, err := s.Scan(context.Background(), ref)
			if err == nil && (ref == fx.Vulnerable) != (len(res.Report.Findings) == 4) {
				err = errors.New(ref + ": wrong findings")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// A second embedded scanner in the same process is refused.
	reg, _ := oci.New(config.Registry{Timeout: time.Second})
	cfg := config.DefaultScanner()
	cfg.CacheDir = t.TempDir()
	if _, err := scanner.New(cfg, scanner.Options{Registry: reg}); err == nil || !strings.Contains(err.Error(), "already open") {
		t.Fatalf("second embedded scanner: %v", err)
	}
}

func TestDBUnavailableFailsClosed(t *testing.T) {
	env, fx := setup(t)
	cases := []struct {
		name, repo, wantErr string
	}{
		{"nothing listening", "127.0.0.1:1/gantry/trivy-db:2", "connection refused"},
		{"no such repository", env.Registry + "/scantest-" + scantest.Unique() + "/trivy-db:2", "MANIFEST_UNKNOWN"},
		{"not a DB artifact", strings.Split(fx.Clean, "@")[0] + ":1", "OCI artifact must be a single layer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newScanner(t, env, func(cfg *config.Scanner) { cfg.DBRepositories = []string{c.repo} }, nil)
			_, err := s.Scan(context.Background(), fx.Vulnerable)
			if !errors.Is(err, scanner.ErrDBUnavailable) {
				t.Fatalf("err = %v, want ErrDBUnavailable", err)
			}
			for _, sub := range []string{c.repo, c.wantErr, "scanner.dbRepositories"} {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q does not mention %q", err, sub)
				}
			}
			_ = s.Close()
		})
	}
}

func TestDBFreshness(t *testing.T) {
	env, fx := setup(t)
	// A DB built ten days ago, pushed beside the fresh one.
	staleRepo := env.Registry + "/scantest-" + scantest.Unique() + "/trivy-db:2"
	archive, err := scantest.DBArchive(time.Now().Add(-240 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := scantest.PushDB(context.Background(), staleRepo, archive, name.Insecure); err != nil {
		t.Fatal(err)
	}
	t.Run("stale DB refused", func(t *testing.T) {
		s := newScanner(t, env, func(c *config.Scanner) { c.DBRepositories = []string{staleRepo} }, nil)
		_, err := s.Scan(context.Background(), fx.Clean)
		if !errors.Is(err, scanner.ErrDBStale) || !strings.Contains(err.Error(), "scanner.dbMaxAge (72h0m0s)") {
			t.Fatalf("err = %v, want ErrDBStale naming scanner.dbMaxAge", err)
		}
		_ = s.Close()
	})
	t.Run("refresh on schedule, keep a fresh DB when the mirror is down, refuse it once stale", func(t *testing.T) {
		cacheDir := t.TempDir()
		start := time.Now()
		now := start
		clock := func() time.Time { return now }
		s := newScanner(t, env, func(c *config.Scanner) {
			c.CacheDir = cacheDir
			c.DBRepositories = []string{fx.DBRepository}
		}, clock)
		if err := s.EnsureDB(context.Background()); err != nil {
			t.Fatal(err)
		}
		first := s.DBStatus()
		_ = s.Close()

		// Within the refresh interval: no download even with the mirror gone.
		now = now.Add(time.Hour)
		s = newScanner(t, env, func(c *config.Scanner) {
			c.CacheDir = cacheDir
			c.DBRepositories = []string{"127.0.0.1:1/gone/trivy-db:2"}
		}, clock)
		if _, err := s.Scan(context.Background(), fx.Clean); err != nil {
			t.Fatalf("cached DB not used: %v", err)
		}
		if s.DBStatus().Dir != first.Dir {
			t.Fatalf("DB replaced within the refresh interval")
		}
		// Due for refresh, mirror down, DB still within dbMaxAge: kept.
		now = now.Add(13 * time.Hour)
		if _, err := s.Scan(context.Background(), fx.Clean); err != nil {
			t.Fatalf("fresh-enough DB dropped after a failed refresh: %v", err)
		}
		// Past dbMaxAge: refused.
		now = now.Add(72 * time.Hour)
		if _, err := s.Scan(context.Background(), fx.Clean); !errors.Is(err, scanner.ErrDBStale) {
			t.Fatalf("err = %v, want ErrDBStale", err)
		}
		_ = s.Close()

		// Due for refresh with the mirror up: a new download replaces it.
		now = start.Add(14 * time.Hour)
		s = newScanner(t, env, func(c *config.Scanner) {
			c.CacheDir = cacheDir
			c.DBRepositories = []string{fx.DBRepository}
		}, clock)
		if err := s.EnsureDB(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := s.DBStatus(); st.Dir == first.Dir || st.Dir == "" {
			t.Errorf("no new download when due: %+v", st)
		}
		entries, _ := os.ReadDir(filepath.Join(cacheDir, "vulndb"))
		var dbs int
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "db-") {
				dbs++
			}
		}
		if dbs != 2 {
			t.Errorf("%d DB directories, want 2 (old kept for running readers)", dbs)
		}
	})
}

func TestImageUnreachable(t *testing.T) {
	env, fx := setup(t)
	s := newScanner(t, env, func(c *config.Scanner) { c.DBRepositories = []string{fx.DBRepository} }, nil)
	missing := env.Registry + "/scantest-" + scantest.Unique() + "/nothing@sha256:" + strings.Repeat("0", 64)
	for _, ref := range []string{missing, "not a reference"} {
		_, err := s.Scan(context.Background(), ref)
		if err == nil || errors.Is(err, scanner.ErrDBUnavailable) || !strings.Contains(err.Error(), "image") {
			t.Errorf("%s: err = %v, want an image error", ref, err)
		}
	}
}
