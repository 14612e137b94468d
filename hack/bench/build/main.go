// Command build compares `gantry build` with `buildctl build` of the same
// Dockerfile on the same buildkitd, cold and warm cache, and Gantry's
// builder library with BuildKit's own client library, and prints the
// ratios (target: ≤ 1.05× each) with their spread, as a table and as JSON
// lines.
//
//	go run ./hack/bench/build [-runs 15] [-gantry bin/gantry]
//
// It needs the test environment (hack/testenv up). Both tools push by
// digest with max-mode provenance and print no progress. "Cold" runs give
// each build a fresh ARG value, so the RUN and COPY steps miss the cache;
// "warm" runs repeat the previous build exactly. Five numbers per case:
// the gantry process (bin/gantry, the front, which execs gantry-build),
// gantry-build run directly (no front: the front's share is the gap),
// Gantry's builder library in this process (no process start-up),
// BuildKit's client.Solve in this process, and the buildctl process; then
// the start-up time of the binaries alone (`gantry-build version` and
// `buildctl --version`).
//
// Every round runs each tool once cold and once warm, each tool next to the
// one it is compared with, who goes first alternating, so that drift on
// the machine touches both sides alike; a ratio is that of the medians
// over the rounds. Its spread is printed beside it: a 90% interval from a
// bootstrap over the rounds, the median of the per-round ratios (the two
// ran back to back: the least touched by load that comes and goes) with
// its interval, both also as JSON lines, and the ratio over each half of
// the rounds. A target is shown met when the ratio is within it; when the
// interval's upper end is not, the table says so: the run cannot tell. The processes'
// CPU time (user+sys, from wait4) is compared too, since on a shared
// machine it moves less than the wall time; the load average is printed
// at the start and the end.
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
	"syscall"
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
	runs := flag.Int("runs", 15, "rounds: builds per tool and case (the median is reported)")
	gantryBin := flag.String("gantry", "bin/gantry", "the gantry binary, with its role binaries beside it (make build)")
	flag.Parse()
	if *runs < 2 {
		fmt.Fprintln(os.Stderr, "bench: -runs must be at least 2 (the spread needs two halves)")
		os.Exit(2)
	}
	if err := run(*runs, *gantryBin); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
}

// sample is one timed build: its wall time and, for a process, its CPU
// time (user+sys).
type sample struct{ wall, cpu time.Duration }

// tool is one way of building; a process tool returns its CPU time.
type tool struct {
	name  string
	kind  string
	build func(nonce string) (cpu time.Duration, err error)
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
	roleBin := filepath.Join(filepath.Dir(gantryBin), "gantry-build")
	if _, err := os.Stat(roleBin); err != nil {
		return fmt.Errorf("%s: %w (make build builds it beside %s)", roleBin, err, gantryBin)
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
	gantryEnv := append(os.Environ(), "GANTRY_BUILDER_ADDRS="+env.BuildkitAddr, "GANTRY_REGISTRY_INSECURE="+env.Registry,
		"GANTRY_BUILDER_PROVENANCE=max", "GANTRY_REGISTRY_AUTH_DIR=")
	gantryArgs := func(image, nonce string) []string {
		return []string{"build", "--context", ctxDir, "--image", image, "--push",
			"--build-arg", "BASE=" + env.BaseImage, "--build-arg", "NONCE=" + nonce, "--progress", "quiet"}
	}
	const gantryProc, gantryRole, gantryLib, rawLib, buildctl = 0, 1, 2, 3, 4
	tools := []tool{
		gantryProc: {"gantry build", report.Process, func(nonce string) (time.Duration, error) {
			cmd := exec.Command(gantryBin, gantryArgs(repo("gantry"), nonce)...)
			cmd.Env = gantryEnv
			return runQuiet(cmd)
		}},
		gantryRole: {"gantry-build build (no front)", report.Process, func(nonce string) (time.Duration, error) {
			cmd := exec.Command(roleBin, gantryArgs(repo("role"), nonce)...)
			cmd.Env = gantryEnv
			return runQuiet(cmd)
		}},
		gantryLib: {"builder.Build (library)", report.InProcess, func(nonce string) (time.Duration, error) {
			_, err := lib.Build(context.Background(), builder.Request{ContextDir: ctxDir, Image: repo("lib"), Push: true,
				BuildArgs: map[string]string{"BASE": env.BaseImage, "NONCE": nonce}}, builder.Progress{})
			return 0, err
		}},
		rawLib: {"buildkit client.Solve (library)", report.InProcess, func(nonce string) (time.Duration, error) {
			return 0, rawSolve(env.BuildkitAddr, ctxDir, repo("raw"), map[string]string{"BASE": env.BaseImage, "NONCE": nonce})
		}},
		buildctl: {"buildctl build", report.Process, func(nonce string) (time.Duration, error) {
			cmd := exec.Command(env.Buildctl, "--addr", env.BuildkitAddr, "build", "--frontend", "dockerfile.v0",
				"--local", "context="+ctxDir, "--local", "dockerfile="+ctxDir,
				"--opt", "build-arg:BASE="+env.BaseImage, "--opt", "build-arg:NONCE="+nonce,
				"--opt", "attest:provenance=mode=max",
				"--output", "type=image,name="+repo("buildctl")+",push=true,push-by-digest=true",
				"--progress", "quiet")
			return runQuiet(cmd)
		}},
	}

	loadStart := loadAvg()
	began := time.Now()
	// Warm-up: one build per tool so that the base image, the binaries and
	// the daemon's own caches are loaded before anything is measured.
	for ti, tl := range tools {
		if _, err := tl.build(fmt.Sprintf("warmup-%d-%d", ti, stamp)); err != nil {
			return fmt.Errorf("%s: %w", tl.name, err)
		}
	}
	cases := []string{"cold", "warm"}
	samples := [2][][]sample{make([][]sample, len(tools)), make([][]sample, len(tools))}
	// Every tool in every round, each next to what it is compared with
	// (buildctl between the two gantry processes, the two libraries side by
	// side), who goes first alternating from round to round, and the
	// processes and the libraries taking turns at the start: load on the
	// machine (other builds, page cache) touches the two sides of a ratio
	// alike.
	for r := range runs {
		procs, libs := []int{gantryProc, buildctl, gantryRole}, []int{gantryLib, rawLib}
		if r%2 == 1 {
			slices.Reverse(procs)
			slices.Reverse(libs)
		}
		order := append(procs, libs...)
		if (r/2)%2 == 1 {
			order = append(libs, procs...)
		}
		for _, ti := range order {
			tl := tools[ti]
			nonce := fmt.Sprintf("%s-%d-%d", tl.name, r, stamp)
			for ci, c := range cases { // the same nonce twice: cold, then warm
				s, err := timed(func() (time.Duration, error) { return tl.build(nonce) })
				if err != nil {
					return fmt.Errorf("%s (%s): %w", tl.name, c, err)
				}
				samples[ci][ti] = append(samples[ci][ti], s)
			}
		}
	}
	// Process start-up alone, for the binary that runs the build (bin/gantry
	// answers version itself and execs gantry-build for a build), measured
	// the same way, three times as often (it is cheap).
	var startG, startB []sample
	for range 3 * runs {
		s, err := timed(func() (time.Duration, error) { return runQuiet(exec.Command(roleBin, "version")) })
		if err != nil {
			return err
		}
		startG = append(startG, s)
		s, err = timed(func() (time.Duration, error) { return runQuiet(exec.Command(env.Buildctl, "--version")) })
		if err != nil {
			return err
		}
		startB = append(startB, s)
	}
	loadEnd := loadAvg()
	took := time.Since(began)

	// Processes against buildctl, the library against BuildKit's own client
	// library: never a process against a function call.
	rep := report.New("build")
	type row struct {
		cs     string
		fig    *report.Figure
		spread *spread
	}
	var rows []row
	compare := func(cs string, f *report.Figure, base *report.Figure, a, b []time.Duration, target string) error {
		if err := rep.Compare(f, *base, target); err != nil {
			return err
		}
		sp := ratioSpread(a, b)
		rows[len(rows)-1].spread = &sp
		for _, q := range []struct {
			name string
			v    float64
		}{
			{"ratio p05 (bootstrap over rounds)", sp.Lo}, {"ratio p95 (bootstrap over rounds)", sp.Hi},
			{"per-round ratio, median", sp.Paired},
			{"per-round ratio, p05 (bootstrap over rounds)", sp.PLo}, {"per-round ratio, p95 (bootstrap over rounds)", sp.PHi},
		} {
			rep.Add(report.Figure{Name: f.Name + ", " + q.name, Kind: f.Kind, Value: round4(q.v), Unit: "ratio", Samples: len(a)})
		}
		return nil
	}
	targets := map[int]string{gantryProc: "<=1.05", gantryRole: "", gantryLib: "<=1.05"}
	bases := map[int]int{gantryProc: buildctl, gantryRole: buildctl, gantryLib: rawLib}
	for ci, c := range cases {
		figs := make([]*report.Figure, len(tools))
		for _, ti := range []int{buildctl, rawLib, gantryProc, gantryRole, gantryLib} {
			figs[ti] = rep.Duration(tools[ti].name+", "+c, tools[ti].kind, median(walls(samples[ci][ti])), runs)
			rows = append(rows, row{cs: c, fig: figs[ti]})
			if bi, ok := bases[ti]; ok {
				if err := compare(c, figs[ti], figs[bi], walls(samples[ci][ti]), walls(samples[ci][bi]), targets[ti]); err != nil {
					return err
				}
			}
		}
		// CPU time of the processes (user+sys of the process and what it
		// waited for), the front included.
		cb := rep.Duration(tools[buildctl].name+", "+c+", CPU user+sys", report.Process, median(cpus(samples[ci][buildctl])), runs)
		rows = append(rows, row{cs: c, fig: cb})
		for _, ti := range []int{gantryProc, gantryRole} {
			cg := rep.Duration(tools[ti].name+", "+c+", CPU user+sys", report.Process, median(cpus(samples[ci][ti])), runs)
			rows = append(rows, row{cs: c, fig: cg})
			if err := compare(c, cg, cb, cpus(samples[ci][ti]), cpus(samples[ci][buildctl]), ""); err != nil {
				return err
			}
		}
	}
	sb := rep.Duration("buildctl --version (start-up)", report.Process, median(walls(startB)), 3*runs)
	rows = append(rows, row{cs: "start", fig: sb})
	sg := rep.Duration(filepath.Base(roleBin)+" version (start-up)", report.Process, median(walls(startG)), 3*runs)
	rows = append(rows, row{cs: "start", fig: sg})
	if err := compare("start", sg, sb, walls(startG), walls(startB), ""); err != nil {
		return err
	}
	sbc := rep.Duration("buildctl --version (start-up), CPU user+sys", report.Process, median(cpus(startB)), 3*runs)
	rows = append(rows, row{cs: "start", fig: sbc})
	sgc := rep.Duration(filepath.Base(roleBin)+" version (start-up), CPU user+sys", report.Process, median(cpus(startG)), 3*runs)
	rows = append(rows, row{cs: "start", fig: sgc})
	if err := compare("start", sgc, sbc, cpus(startG), cpus(startB), ""); err != nil {
		return err
	}

	fmt.Printf("\nmedians of %d rounds (start-up: %d), same buildkitd (%s), push by digest, provenance mode=max\n", runs, 3*runs, env.BuildkitAddr)
	fmt.Printf("load average %s at the start, %s at the end; %s in all\n\n", loadStart, loadEnd, took.Round(time.Second))
	fmt.Printf("%-5s %-45s %-10s %9s %7s %-11s %-6s %-11s %-11s %s\n", "case", "figure", "kind", "median", "ratio", "90%", "paired", "90%", "halves", "target")
	for _, r := range rows {
		ratio, interval, paired, pinterval, halves, target := "", "", "", "", "", ""
		if r.fig.Ratio != nil {
			ratio = fmt.Sprintf("%.3fx", *r.fig.Ratio)
		}
		if sp := r.spread; sp != nil {
			interval = fmt.Sprintf("%.2f-%.2f", sp.Lo, sp.Hi)
			paired = fmt.Sprintf("%.3f", sp.Paired)
			pinterval = fmt.Sprintf("%.2f-%.2f", sp.PLo, sp.PHi)
			halves = fmt.Sprintf("%.2f/%.2f", sp.First, sp.Second)
			if r.fig.Target != nil {
				target = *r.fig.Target + " " + map[bool]string{true: "met", false: "NOT met"}[*r.fig.Met]
				if *r.fig.Met && !withinUpper(sp.Hi, *r.fig.Target) {
					target += " (p95 above: not shown)"
				}
			}
		}
		name := strings.TrimSuffix(r.fig.Name, ", "+r.cs)
		name = strings.Replace(name, ", "+r.cs+",", ",", 1)
		fmt.Printf("%-5s %-45s %-10s %7.1fms %7s %-11s %-6s %-11s %-11s %s\n", r.cs, name, r.fig.Kind, r.fig.Value, ratio, interval, paired, pinterval, halves, target)
	}
	fmt.Println("ratio: of the medians; 90%: its bootstrap interval over rounds; paired: median of the per-round ratios (the two ran")
	fmt.Println("back to back), and its interval; halves: ratio of medians over each half of the rounds")
	fmt.Println("targets: gantry build process <= 1.05x buildctl build; builder.Build <= 1.05x client.Solve")
	fmt.Println()
	return rep.WriteJSON(os.Stdout)
}

// withinUpper says whether x is within a "<=X" target.
func withinUpper(x float64, target string) bool {
	var bound float64
	if _, err := fmt.Sscanf(target, "<=%g", &bound); err != nil {
		return true
	}
	return x <= bound
}

func walls(s []sample) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, x := range s {
		out[i] = x.wall
	}
	return out
}

func cpus(s []sample) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, x := range s {
		out[i] = x.cpu
	}
	return out
}

func round4(x float64) float64 { return float64(int64(x*10000+0.5)) / 10000 }

// loadAvg is the 1-, 5- and 15-minute load averages ("?" if unknown).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
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

// runQuiet runs cmd and returns its CPU time (user+sys, as wait4 reports
// it: the process and the children it waited for).
func runQuiet(cmd *exec.Cmd) (time.Duration, error) {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v\n%s", err, out)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, fmt.Errorf("%s: no resource usage", cmd.Path)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

func timed(f func() (time.Duration, error)) (sample, error) {
	start := time.Now()
	cpu, err := f()
	return sample{wall: time.Since(start), cpu: cpu}, err
}
