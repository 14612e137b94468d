//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/internal/version"
	"github.com/gantry-dev/gantry/scanner"
	"github.com/gantry-dev/gantry/scanner/gate"
	"github.com/gantry-dev/gantry/scanner/report"
)

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "scan IMAGE",
			Short: "Scan an image in a registry for vulnerabilities and apply the gate",
			Long: `Scan an image (repository@sha256:… or a tag, resolved to its digest) with Trivy,
read straight from its registry. The gate fails on scanner.severities
(default CRITICAL,HIGH) with a fix available (scanner.onlyFixed), minus the
entries of the ignore file that have not expired.

Exit status: 0 the gate passed, 1 the gate failed, 2 the scan could not run
(the message says whether the image or the vulnerability DB was unreachable).`,
			Args: cobra.ExactArgs(1),
		}
		f := cmd.Flags()
		format := outputFlag(cmd, "table", "json", "sarif", "cyclonedx", "markdown")
		f.String("severity", "", "severities that fail the gate, comma-separated (scanner.severities)")
		f.String("ignore-file", "", "YAML file of accepted findings: id, reason, expires (scanner.ignoreFile)")
		f.Bool("only-fixed", true, "fail only on findings with a fix available; --only-fixed=false fails on all (scanner.onlyFixed)")
		f.String("trivy-server", "", "URL of a Trivy server to match vulnerabilities (scanner.server)")
		f.String("db-repository", "", "OCI repositories of the vulnerability DB, comma-separated (scanner.dbRepositories)")
		f.String("cache-dir", "", "DB and layer cache directory (scanner.cacheDir)")
		sbomPath := f.String("sbom", "", "also write the CycloneDX SBOM to this file")
		mdLimit := f.Int("markdown-limit", report.DefaultMarkdownLimit, "byte cap of --output markdown")
		for key, flag := range map[string]string{
			"scanner.severities": "severity", "scanner.ignoreFile": "ignore-file", "scanner.onlyFixed": "only-fixed",
			"scanner.server": "trivy-server", "scanner.dbRepositories": "db-repository", "scanner.cacheDir": "cache-dir",
		} {
			a.configFlags[key] = flag
		}
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			out, err := format()
			if err != nil {
				return err
			}
			return runScan(cmd.Context(), a, args[0], out, *sbomPath, *mdLimit)
		}
		return cmd
	})
}

func runScan(ctx context.Context, a *app, image, format, sbomPath string, mdLimit int) error {
	cfg := a.cfg.Scanner
	var ignores []gate.Ignore
	if cfg.IgnoreFile != "" {
		var err error
		if ignores, err = gate.LoadIgnoreFile(cfg.IgnoreFile); err != nil {
			return err
		}
	}
	reg, err := oci.New(a.cfg.Registry)
	if err != nil {
		return err
	}
	// Trivy logs through slog's default logger: send it to our stderr,
	// quiet unless debugging.
	level := slog.LevelWarn
	if a.cfg.Log.Level == "debug" {
		level = slog.LevelDebug
	}
	prev := slog.Default()
	slog.SetDefault(slog.New(scanLogHandler{newLogger(a.stderr, a.cfg.Log).Handler(), level}).With("component", "trivy"))
	defer slog.SetDefault(prev)

	s, err := scanner.New(cfg, scanner.Options{Registry: reg, Log: a.log})
	if err != nil {
		return err
	}
	defer s.Close()
	res, err := s.Scan(ctx, image)
	if err != nil {
		return err
	}
	v := gate.Evaluate(res.Report, gate.Policy{Severities: cfg.Severities, OnlyFixed: cfg.OnlyFixed, Ignores: ignores})
	if sbomPath != "" {
		if err := scanWriteFile(sbomPath, func(f *os.File) error { return res.WriteCycloneDX(ctx, f) }); err != nil {
			return fmt.Errorf("--sbom %s: %w", sbomPath, err)
		}
	}
	switch format {
	case "json":
		err = report.WriteJSON(a.stdout, res.Report, v)
	case "sarif":
		err = report.WriteSARIF(a.stdout, res.Report, v, version.Get().Version)
	case "cyclonedx":
		err = res.WriteCycloneDX(ctx, a.stdout)
	case "markdown":
		_, err = fmt.Fprint(a.stdout, report.Markdown(res.Report, v, mdLimit))
	default:
		err = report.WriteTable(a.stdout, res.Report, v)
	}
	if err != nil {
		return err
	}
	for _, e := range v.ExpiredIgnores {
		a.log.Warn("ignore entry expired and no longer applies", "id", e.ID, "expired", e.Expires)
	}
	if !v.Pass {
		return policyFailure(errors.New("scan gate failed: " + v.Summary))
	}
	return nil
}

// scanLogHandler drops records below a level (Trivy logs at info freely).
type scanLogHandler struct {
	h   slog.Handler
	min slog.Level
}

func (h scanLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.h.Enabled(ctx, l)
}
func (h scanLogHandler) Handle(ctx context.Context, r slog.Record) error { return h.h.Handle(ctx, r) }
func (h scanLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return scanLogHandler{h.h.WithAttrs(as), h.min}
}
func (h scanLogHandler) WithGroup(name string) slog.Handler {
	return scanLogHandler{h.h.WithGroup(name), h.min}
}

func scanWriteFile(path string, write func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}
