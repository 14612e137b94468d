// Command scan compares `gantry scan` with the `trivy image` CLI built from
// the same Trivy module version, on the same image and the same DB, with a
// warm cache, and prints the ratios (target: gantry ≤ 1.0× trivy).
//
//	go run ./hack/bench/scan [-runs 15] [-gantry bin/gantry] [-trivy PATH]
//
// It needs the test environment (hack/testenv up). The test DB and images
// come from scanner/scantest. Each tool gets its own cache dir, warmed by
// one untimed run; then the tools run in -runs interleaved rounds and the
// median of each is reported.
//
// gantry produces the findings, the gate verdict and the CycloneDX SBOM from
// one analysis (`-o json --sbom FILE`). trivy is timed twice: `--format
// json` (findings only) and `--format cyclonedx --scanners vuln` (SBOM with
// findings), each one run.
//
// The trivy binary is the one hack/testenv installs (GANTRY_TRIVY in its
// env file): built from the Trivy version in go.mod, with go.mod's other
// versions, so both tools run the same Trivy code.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/hack/bench/internal/report"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/scanner/scantest"
)

func main() {
	runs := flag.Int("runs", 15, "timed runs per tool (the median is reported)")
	gantryBin := flag.String("gantry", "bin/gantry", "the gantry binary, with its role binaries beside it (make build)")
	trivyBin := flag.String("trivy", "", "trivy binary (default: the test environment's, GANTRY_TRIVY)")
	flag.Parse()
	if err := run(*runs, *gantryBin, *trivyBin); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
}

func run(runs int, gantryBin, trivyBin string) error {
	env, err := testenv.Open()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "gantry-bench-scan-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if _, err := os.Stat(gantryBin); err != nil {
		return fmt.Errorf("%s: %w (run make build first; make bench does)", gantryBin, err)
	}
	if trivyBin == "" {
		if trivyBin = env.Trivy; trivyBin == "" {
			return fmt.Errorf("the test environment has no %s: run hack/testenv up (it installs the trivy CLI)", testenv.KeyTrivy)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fx, err := scantest.Setup(ctx, env.BuildkitAddr, env.Registry, env.BaseImage, time.Now())
	if err != nil {
		return err
	}
	image := fx.Vulnerable
	fmt.Printf("image %s\nDB    %s\n", image, fx.DBRepository)

	gantryCache, trivyCache := filepath.Join(work, "gantry-cache"), filepath.Join(work, "trivy-cache")
	gantryEnv := append(os.Environ(),
		"GANTRY_REGISTRY_INSECURE="+env.Registry,
		"GANTRY_SCANNER_DB_REPOSITORIES="+fx.DBRepository,
		"GANTRY_SCANNER_JAVA_DB_REPOSITORIES=",
		"GANTRY_SCANNER_CACHE_DIR="+gantryCache)
	trivyEnv := append(os.Environ(), "TRIVY_NO_PROGRESS=true")
	trivyArgs := func(format string) []string {
		return []string{"image", "--cache-dir", trivyCache, "--db-repository", fx.DBRepository,
			"--skip-java-db-update", "--insecure", "--skip-version-check", "--disable-telemetry",
			"--image-src", "remote", "--scanners", "vuln", "--format", format, "--quiet",
			"--output", filepath.Join(work, "trivy-out"), image}
	}
	tools := []struct {
		label string
		bin   string
		args  []string
		env   []string
		okRC  []int // exit codes that mean "ran": gantry exits 1 on the gate
	}{
		{"gantry scan (findings + gate + SBOM)", gantryBin,
			[]string{"scan", "-o", "json", "--sbom", filepath.Join(work, "sbom.json"), image}, gantryEnv, []int{0, 1}},
		{"trivy image --format json", trivyBin, trivyArgs("json"), trivyEnv, []int{0}},
		{"trivy image --format cyclonedx", trivyBin, trivyArgs("cyclonedx"), trivyEnv, []int{0}},
	}
	for _, tl := range tools { // warm each cache and DB, untimed
		if _, err := timeRun(tl.bin, tl.args, tl.env, tl.okRC); err != nil {
			return fmt.Errorf("%s: %w", tl.label, err)
		}
	}
	// Interleaved rounds: on a shared machine the load drifts, and running
	// the tools alternately exposes each to the same drift.
	durations := make([][]time.Duration, len(tools))
	for range runs {
		for i, tl := range tools {
			d, err := timeRun(tl.bin, tl.args, tl.env, tl.okRC)
			if err != nil {
				return fmt.Errorf("%s: %w", tl.label, err)
			}
			durations[i] = append(durations[i], d)
		}
	}
	rep := report.New("scan")
	figs := make([]*report.Figure, len(tools))
	for i, tl := range tools {
		ds := durations[i]
		slices.Sort(ds)
		figs[i] = rep.Duration(tl.label, report.Process, ds[len(ds)/2], runs)
		fmt.Printf("%-40s median %8s  (min %s, max %s, %d runs, warm cache)\n", tl.label,
			ds[len(ds)/2].Round(time.Millisecond), ds[0].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond), runs)
	}
	// One gantry scan writes the findings and the SBOM: against trivy it
	// is compared with the JSON run (target) and with the CycloneDX run.
	if err := rep.Compare(figs[0], *figs[1], "<=1.0"); err != nil {
		return err
	}
	fmt.Printf("ratio gantry / trivy json       = %.2f×  (target ≤ 1.0×)\n", *figs[0].Ratio)
	fmt.Printf("ratio gantry / trivy cyclonedx  = %.2f×\n", ratio(figs[0], figs[2]))
	fmt.Printf("ratio gantry / (json + cyclonedx, two trivy runs) = %.2f×\n\n", figs[0].Value/(figs[1].Value+figs[2].Value))
	return rep.WriteJSON(os.Stdout)
}

func ratio(a, b *report.Figure) float64 { return a.Value / b.Value }

func timeRun(bin string, args, env []string, okRC []int) (time.Duration, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stdout = nil
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		rc := -1
		if ee, ok := err.(*exec.ExitError); ok {
			rc = ee.ExitCode()
		}
		if !slices.Contains(okRC, rc) {
			return 0, fmt.Errorf("%s %s: exit %d: %s", bin, strings.Join(args, " "), rc, tail(stderr.String(), 2000))
		}
	}
	return d, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
