//go:build !gantry_role_admission && !gantry_role_policy

package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/builder"
	"github.com/gantry-dev/gantry/internal/oci"
)

// buildOutput is `gantry build --output json`.
type buildOutput struct {
	Digest           string                  `json:"digest"`
	Ref              string                  `json:"ref"`
	Pushed           bool                    `json:"pushed"`
	MediaType        string                  `json:"mediaType,omitempty"`
	Size             int64                   `json:"size"`
	Duration         string                  `json:"duration"`
	DurationSeconds  float64                 `json:"durationSeconds"`
	ProvenanceDigest string                  `json:"provenanceDigest,omitempty"`
	Images           []builder.PlatformImage `json:"images,omitempty"`
	Daemon           string                  `json:"daemon"`
	BuildRef         string                  `json:"buildRef"`
	Warnings         []string                `json:"warnings,omitempty"`
}

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "build --context DIR --image REPO [--push]",
			Short: "Build an image with BuildKit and push it by digest, with SLSA provenance",
			Long: "Build DIR's Dockerfile on the buildkitd pool (builder.addrs) with the dockerfile.v0 frontend.\n" +
				"With --push the image goes to REPO by digest (a REPO:TAG also writes that tag), is read back\n" +
				"from the registry, and its digest is printed on stdout. Progress goes to stderr as\n" +
				"buildctl prints it (--progress). Secrets reach RUN --mount=type=secret only, never build args.\n" +
				"See docs/builder.md. Exit 0 built, 2 any error (a failing step names its line, exit code and output).",
			Args: cobra.NoArgs,
		}
		fl := cmd.Flags()
		var req builder.Request
		fl.StringVar(&req.ContextDir, "context", "", "build context directory (required)")
		fl.StringVarP(&req.Dockerfile, "file", "f", "", "Dockerfile, relative to the context (default Dockerfile)")
		fl.StringVar(&req.Image, "image", "", "repository to push to: REPO (by digest only) or REPO:TAG (required)")
		fl.BoolVar(&req.Push, "push", false, "push the image to the registry (else only build it)")
		fl.StringVar(&req.Target, "target", "", "stage to build (default the last)")
		fl.BoolVar(&req.NoCache, "no-cache", false, "do not use the build cache")
		fl.StringVar(&req.ID, "id", "", "BuildKit build id (as shown by buildctl debug history); default random")
		buildArgs := fl.StringArray("build-arg", nil, "build arg KEY=VALUE (repeatable); never secrets, use --secret")
		secrets := fl.StringArray("secret", nil, "build secret id=ID,src=FILE for RUN --mount=type=secret (repeatable)")
		platforms := fl.StringSlice("platform", nil, "platforms to build, e.g. linux/amd64,linux/arm64 (default builder.platforms)")
		progress := fl.String("progress", "auto", "progress on stderr, as buildctl's: auto (tty on a terminal, else plain), plain, tty, rawjson, quiet")
		format := outputFlag(cmd, "text", "json")
		_ = cmd.MarkFlagRequired("context")
		_ = cmd.MarkFlagRequired("image")
		cmd.RunE = func(cmd *cobra.Command, _ []string) error {
			out, err := format()
			if err != nil {
				return err
			}
			if req.BuildArgs, err = keyValues("--build-arg", *buildArgs); err != nil {
				return err
			}
			if req.Secrets, err = parseSecrets(*secrets); err != nil {
				return err
			}
			req.Platforms = *platforms
			var prog builder.Progress
			switch *progress {
			case "quiet":
			case "auto", "plain", "tty", "rawjson":
				prog = builder.Progress{Out: a.stderr, Mode: *progress}
			default:
				return fmt.Errorf("--progress %q: allowed: auto, plain, tty, rawjson, quiet", *progress)
			}
			reg, err := oci.New(a.cfg.Registry)
			if err != nil {
				return err
			}
			b, err := builder.New(builder.FromConfig(a.cfg.Builder, reg, a.cfg.Registry))
			if err != nil {
				return err
			}
			defer b.Close()
			res, err := b.Build(cmd.Context(), req, prog)
			if err != nil {
				return err
			}
			if out == "json" {
				return writeJSON(a.stdout, buildOutput{Digest: res.Digest, Ref: res.Ref, Pushed: req.Push, MediaType: res.MediaType,
					Size: res.Size, Duration: res.Duration.Round(time.Millisecond).String(), DurationSeconds: res.Duration.Seconds(),
					ProvenanceDigest: res.ProvenanceDigest, Images: res.Images, Daemon: res.Daemon, BuildRef: res.BuildRef,
					Warnings: res.Warnings})
			}
			return writeBuildText(a.stdout, res, req.Push)
		}
		return cmd
	})
}

func writeBuildText(w io.Writer, res *builder.Result, pushed bool) error {
	if pushed {
		fmt.Fprintf(w, "pushed %s\n", res.Ref)
	} else {
		fmt.Fprintf(w, "built %s (not pushed)\n", res.Ref)
	}
	if res.ProvenanceDigest != "" {
		fmt.Fprintf(w, "provenance %s\n", res.ProvenanceDigest)
	}
	// The digest alone on the last line, for scripts: `| tail -1`.
	_, err := fmt.Fprintln(w, res.Digest)
	return err
}

// parseSecrets reads buildctl-style --secret id=ID,src=FILE values.
func parseSecrets(vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, v := range vals {
		var id, src string
		for field := range strings.SplitSeq(v, ",") {
			k, val, _ := strings.Cut(field, "=")
			switch k {
			case "id":
				id = val
			case "src", "source":
				src = val
			default:
				return nil, fmt.Errorf("--secret %q: want id=ID,src=FILE (a secret is read from a file, never given as a value)", v)
			}
		}
		if id == "" || src == "" {
			return nil, fmt.Errorf("--secret %q: want id=ID,src=FILE", v)
		}
		m[id] = src
	}
	return m, nil
}
