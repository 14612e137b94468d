// Command build compares `gantry build` with `buildctl build` of the same
// Dockerfile on the same buildkitd, cold and warm cache, and Gantry's
// builder library with BuildKit's own client library, and prints the
// ratios (target: ≤ 1.05× each) as a table and as JSON lines.
//
//	go run ./hack/bench/build [-runs 7] [-gantry bin/gantry]
//
// It needs the test environment (hack/testenv up). Both tools push by
// digest with max-mode provenance and print no progress. "Cold" runs give
// each build a fresh ARG value, so the RUN and COPY steps miss the cache;
// "warm" runs repeat the previous build exactly. Four numbers per case:
// the gantry process, Gantry's builder library in this process (no
// process start-up), BuildKit's client.Solve in this process, and the
// buildctl process; then the start-up time of the binaries alone
// (`gantry-build version`, the role binary bin/gantry execs for a build,
// and `buildctl --version`).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/moby/buildkit/client"
	"github.com/tonistiigi/fsutil"

	"github.com/gantry-dev/gantry/builder"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/hack/bench/internal/report"
	"github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/internal/testenv"
)

const dockerfile = `ARG BASE
FROM ${BASE}
ARG NONCE
RUN echo "$NONCE" > /nonce && for i in $(seq 1 500); do echo "line $i"; done > /lines
COPY payload /srv/payload
USER 1000:1000
CMD ["cat", "/nonce"]
`

func main() {
	runs := flag.Int("runs", 7, "builds per tool and case (the median is reported)")
	gantryBin := flag.String("gantry", "bin/gantry", "the gantry binary, with its role binaries beside it (make build)")
	flag.Parse()
	if err := run(*runs, *gantryBin); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
}

func run(runs int, gantryBin string) error {
	env, err := testenv.Open()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "gantry-bench-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if _, err := os.Stat(gantryBin); err != nil {
		return fmt.Errorf("%s: %w (run make build first; make bench does)", gantryBin, err)
	}
	ctxDir := filepath.Join(work, "ctx")
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "payload"), payload, 0o644); err != nil {
		return err
	}

	reg, err := oci.New(config.Registry{Insecure: []string{env.Registry}, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	lib, err := builder.New(builder.Options{Addrs: []string{env.BuildkitAddr}, Provenance: "max", Registry: reg,
		DialTimeout: 10 * time.Second, AuthDir: work})
	if err != nil {
		return err
	}
	defer lib.Close()

	stamp := time.Now().UnixNano()
	repo := func(tool string) string { return fmt.Sprintf("%s/bench/%s-%d", env.Registry, tool, stamp) }
	tools := []struct {
		name  string
		build func(nonce string) error
	}{
		{"gantry build", func(nonce string) error {
			cmd := exec.Command(gantryBin, "build", "--context", ctxDir, "--image", repo("gantry"), "--push",
				"--build-arg", "BASE="+env.BaseImage, "--build-arg", "NONCE="+nonce, "--progress", "quiet")
			cmd.Env = append(os.Environ(), "GANTRY_BUILDER_ADDRS="+env.BuildkitAddr, "GANTRY_REGISTRY_INSECURE="+env.Registry,
				"GANTRY_BUILDER_PROVENANCE=max", "GANTRY_REGISTRY_AUTH_DIR=")
			return runQuiet(cmd)
		}},
		{"builder.Build (library)", func(nonce string) error {
			_, err := lib.Build(context.Background(), builder.Request{ContextDir: ctxDir, Image: repo("lib"), Push: true,
				BuildArgs: map[string]string{"BASE": env.BaseImage, "NONCE": nonce}}, builder.Progress{})
			return err
		}},
		{"buildkit client.Solve (library)", func(nonce string) error {
			return rawSolve(env.BuildkitAddr, ctxDir, repo("raw"), map[string]string{"BASE": env.BaseImage, "NONCE": nonce})
		}},
		{"buildctl build", func(nonce string) error {
			cmd := exec.Command(env.Buildctl, "--addr", env.BuildkitAddr, "build", "--frontend", "dockerfile.v0",
				"--local", "context="+ctxDir, "--local", "dockerfile="+ctxDir,
				"--opt", "build-arg:BASE="+env.BaseImage, "--opt", "build-arg:NONCE="+nonce,
				"--opt", "attest:provenance=mode=max",
				"--output", "type=image,name="+repo("buildctl")+",push=true,push-by-digest=true",
				"--progress", "quiet")
			return runQuiet(cmd)
		}},
	}

	cold := make([][]time.Duration, len(tools))
	warm := make([][]time.Duration, len(tools))
	// Warm-up: one build per tool so that the base image, the binaries and
	// the daemon's own caches are loaded before anything is measured.
	for ti, tl := range tools {
		if err := tl.build(fmt.Sprintf("warmup-%d-%d", ti, stamp)); err != nil {
			return fmt.Errorf("%s: %w", tl.name, err)
		}
	}
	// Interleave tools in every round, and rotate which goes first, so
	// that drift on the machine (other builds, page cache) and the order
	// affect all of them alike.
	for r := range runs {
		for k := range tools {
			ti := (k + r) % len(tools)
			tl := tools[ti]
			nonce := fmt.Sprintf("%s-%d-%d", tl.name, r, stamp)
			d, err := timed(func() error { return tl.build(nonce) })
			if err != nil {
				return fmt.Errorf("%s (cold): %w", tl.name, err)
			}
			cold[ti] = append(cold[ti], d)
			d, err = timed(func() error { return tl.build(nonce) })
			if err != nil {
				return fmt.Errorf("%s (warm): %w", tl.name, err)
			}
			warm[ti] = append(warm[ti], d)
		}
	}
	// Process start-up alone explains the gap between the gantry process
	// and the library: measure it the same way, for the binary that runs
	// the build (bin/gantry answers version itself and execs gantry-build
	// for a build).
	roleBin := filepath.Join(filepath.Dir(gantryBin), "gantry-build")
	if _, err := os.Stat(roleBin); err != nil {
		roleBin = filepath.Join(filepath.Dir(gantryBin), "gantry-core")
	}
	roleName := filepath.Base(roleBin) + " version (start-up)"
	var startG, startB []time.Duration
	for range runs {
		d, err := timed(func() error { return runQuiet(exec.Command(roleBin, "version")) })
		if err != nil {
			return err
		}
		startG = append(startG, d)
		d, err = timed(func() error { return runQuiet(exec.Command(env.Buildctl, "--version")) })
		if err != nil {
			return err
		}
		startB = append(startB, d)
	}

	// Processes against buildctl, the library against BuildKit's own client
	// library: never a process against a function call.
	rep := report.New("build")
	const gantryProc, gantryLib, rawLib, buildctl = 0, 1, 2, 3
	kinds := []string{report.Process, report.InProcess, report.InProcess, report.Process}
	base := map[int]int{gantryProc: buildctl, gantryLib: rawLib}
	type pair struct{ cold, warm *report.Figure }
	figs := make([]pair, len(tools))
	for ti, tl := range tools {
		figs[ti] = pair{rep.Duration(tl.name+", cold", kinds[ti], median(cold[ti]), runs),
			rep.Duration(tl.name+", warm", kinds[ti], median(warm[ti]), runs)}
	}
	for ti, bi := range base {
		if err := rep.Compare(figs[ti].cold, *figs[bi].cold, "<=1.05"); err != nil {
			return err
		}
		if err := rep.Compare(figs[ti].warm, *figs[bi].warm, "<=1.05"); err != nil {
			return err
		}
	}
	sg := rep.Duration(roleName, report.Process, median(startG), runs)
	sb := rep.Duration("buildctl --version (start-up)", report.Process, median(startB), runs)
	if err := rep.Compare(sg, *sb, ""); err != nil {
		return err
	}

	fmt.Printf("\nmedian of %d builds each, same buildkitd (%s), push by digest, provenance mode=max\n\n", runs, env.BuildkitAddr)
	fmt.Printf("%-34s %-10s %12s %8s %12s %8s\n", "", "kind", "cold", "ratio", "warm", "ratio")
	ratio := func(f *report.Figure) string {
		if f.Ratio == nil {
			return ""
		}
		return fmt.Sprintf("%.3fx", *f.Ratio)
	}
	for ti, tl := range tools {
		c, w := figs[ti].cold, figs[ti].warm
		fmt.Printf("%-34s %-10s %10.0fms %8s %10.0fms %8s\n", tl.name, kinds[ti], c.Value, ratio(c), w.Value, ratio(w))
	}
	fmt.Printf("%-34s %-10s %10.1fms %8s (buildctl --version %.1fms)\n", roleName, report.Process, sg.Value, ratio(sg), sb.Value)
	fmt.Println("targets: gantry build process <= 1.05x buildctl build; builder.Build <= 1.05x client.Solve")
	fmt.Println()
	return rep.WriteJSON(os.Stdout)
}

// rawSolve is what buildctl does, as a library call: BuildKit's own client,
// the dockerfile frontend, the same exporter options, no progress display.
func rawSolve(addr, dir, image string, args map[string]string) error {
	ctx := context.Background()
	c, err := client.New(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	fsys, err := fsutil.NewFS(dir)
	if err != nil {
		return err
	}
	attrs := map[string]string{"attest:provenance": "mode=max"}
	for k, v := range args {
		attrs["build-arg:"+k] = v
	}
	ch := make(chan *client.SolveStatus)
	done := make(chan struct{})
	go func() {
		for range ch {
		}
		close(done)
	}()
	_, err = c.Solve(ctx, nil, client.SolveOpt{
		Frontend: "dockerfile.v0", FrontendAttrs: attrs,
		LocalMounts: map[string]fsutil.FS{"context": fsys, "dockerfile": fsys},
		Exports: []client.ExportEntry{{Type: client.ExporterImage,
			Attrs: map[string]string{"name": image, "push": "true", "push-by-digest": "true"}}},
	}, ch) // closes ch
	<-done
	return err
}

func runQuiet(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
}

func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
