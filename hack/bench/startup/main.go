// Command startup measures what a user waits for before a command does
// anything: wall time to exit and peak memory of `gantry version`,
// `gantry verify --help` and `gantry policy check --offline` (a small Pod),
// through the front binary (bin/gantry, which answers help and version
// itself and execs a role binary for the rest) and, as the baseline, the
// same command lines given straight to gantry-core, the one binary that
// links every command (what bin/gantry was before the split). With the test
// environment up, `cosign version` is timed too, as context. `policy check`
// is also compared with its floor, psacheck (./psacheck): the same Pod
// decoded and evaluated by Kubernetes' Pod Security evaluator and nothing
// else, built here with make build's flags.
//
//	go run ./hack/bench/startup [-n 31] [-gantry bin/gantry]
//
// Processes are compared with processes; every figure is also printed as a
// JSON line (hack/bench/internal/report). Targets (issue 16): ≤ 15 ms wall
// and ≤ 40 MiB peak.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gantry-dev/gantry/hack/bench/internal/report"
	"github.com/gantry-dev/gantry/internal/testenv"
)

const pod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"fn"},"spec":{"containers":[{"name":"c",
"image":"registry.example/f@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","securityContext":{"runAsNonRoot":true,
"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]},"seccompProfile":{"type":"RuntimeDefault"}}}]}}`

func main() {
	n := flag.Int("n", 31, "runs per command line (the median is reported)")
	gantryBin := flag.String("gantry", "bin/gantry", "the front binary, with gantry-core and the role binaries beside it (make build)")
	flag.Parse()
	if err := run(*n, *gantryBin); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
}

type sample struct {
	wall   time.Duration
	maxRSS int64 // KiB
}

type cmdline struct {
	name  string
	args  []string
	stdin string
	exit  int
	// floor, when set, is a minimal program doing the same work with the
	// same libraries, measured beside the command (given stdin, no args).
	floor string
}

func run(n int, front string) error {
	core := filepath.Join(filepath.Dir(front), "gantry-core")
	for _, b := range []string{front, core} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%w (run make build first; make bench does)", err)
		}
	}
	tmp, err := os.MkdirTemp("", "startup-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	psacheck := filepath.Join(tmp, "psacheck")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", psacheck, "./hack/bench/startup/psacheck")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building psacheck (run from the repository root): %v\n%s", err, out)
	}
	lines := []cmdline{
		{name: "version", args: []string{"version"}},
		{name: "verify --help", args: []string{"verify", "--help"}},
		{name: "policy check --offline", args: []string{"policy", "check", "-f", "-", "--offline"}, stdin: pod, floor: psacheck},
	}
	rep := report.New("startup")
	fmt.Printf("%-26s %12s %12s %12s %12s\n", "command (median of runs)", "gantry", "peak", "gantry-core", "peak")
	for _, l := range lines {
		// Interleaved, so that load changes hit both alike.
		var viaFront, viaCore, floor []sample
		for range n {
			s, err := measure(front, l)
			if err != nil {
				return err
			}
			viaFront = append(viaFront, s)
			if s, err = measure(core, l); err != nil {
				return err
			}
			viaCore = append(viaCore, s)
			if l.floor != "" {
				if s, err = measure(l.floor, cmdline{stdin: l.stdin}); err != nil {
					return err
				}
				floor = append(floor, s)
			}
		}
		fw, fm := medians(viaFront)
		cw, cm := medians(viaCore)
		fmt.Printf("%-26s %10.1fms %9.1fMiB %10.1fms %9.1fMiB\n", "gantry "+l.name, ms(fw), mib(fm), ms(cw), mib(cm))

		wall := rep.Duration("gantry "+l.name+" wall", report.Process, fw, n)
		if err := rep.Bound(wall, "<=15"); err != nil {
			return err
		}
		base := rep.Duration("gantry-core "+l.name+" wall", report.Process, cw, n)
		ratio := rep.Duration("gantry "+l.name+" wall vs gantry-core", report.Process, fw, n)
		if err := rep.Compare(ratio, *base, ""); err != nil {
			return err
		}
		peak := rep.Add(report.Figure{Name: "gantry " + l.name + " peak RSS", Kind: report.Process, Value: round1(mib(fm)), Unit: "MiB", Samples: n})
		if err := rep.Bound(peak, "<=40"); err != nil {
			return err
		}
		rep.Add(report.Figure{Name: "gantry-core " + l.name + " peak RSS", Kind: report.Process, Value: round1(mib(cm)), Unit: "MiB", Samples: n})
		if l.floor != "" {
			w, m := medians(floor)
			fmt.Printf("%-26s %10.1fms %9.1fMiB (floor: %s)\n", "  "+filepath.Base(l.floor), ms(w), mib(m), l.name)
			base := rep.Duration(filepath.Base(l.floor)+" wall", report.Process, w, n)
			ratio := rep.Duration("gantry "+l.name+" wall vs "+filepath.Base(l.floor), report.Process, fw, n)
			if err := rep.Compare(ratio, *base, ""); err != nil {
				return err
			}
			rep.Add(report.Figure{Name: filepath.Base(l.floor) + " peak RSS", Kind: report.Process, Value: round1(mib(m)), Unit: "MiB", Samples: n})
		}
	}
	if env, err := testenv.Open(); err == nil && env.Cosign != "" {
		var cs []sample
		for range n {
			s, err := measure(env.Cosign, cmdline{args: []string{"version"}})
			if err != nil {
				return err
			}
			cs = append(cs, s)
		}
		w, m := medians(cs)
		fmt.Printf("%-26s %10.1fms %9.1fMiB (context)\n", "cosign version", ms(w), mib(m))
		rep.Duration("cosign version wall", report.Process, w, n)
		rep.Add(report.Figure{Name: "cosign version peak RSS", Kind: report.Process, Value: round1(mib(m)), Unit: "MiB", Samples: n})
	}
	return rep.WriteJSON(os.Stdout)
}

// measure runs bin once with a clean environment (no GANTRY_* variables,
// which would make the front hand version to a role binary to validate
// them) and returns its wall time and peak resident memory.
func measure(bin string, l cmdline) (sample, error) {
	cmd := exec.Command(bin, l.args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + os.TempDir()}
	cmd.Stdin = strings.NewReader(l.stdin)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var ee *exec.ExitError
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != l.exit) {
		return sample{}, fmt.Errorf("%s %s: %v\n%s", bin, strings.Join(l.args, " "), err, out.String())
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return sample{}, fmt.Errorf("no resource usage for %s", bin)
	}
	return sample{wall: wall, maxRSS: ru.Maxrss}, nil
}

func medians(s []sample) (time.Duration, int64) {
	w := make([]time.Duration, len(s))
	m := make([]int64, len(s))
	for i, x := range s {
		w[i], m[i] = x.wall, x.maxRSS
	}
	slices.Sort(w)
	slices.Sort(m)
	return w[len(w)/2], m[len(m)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mib(kib int64) float64      { return float64(kib) / 1024 }
func round1(x float64) float64   { return float64(int64(x*10+0.5)) / 10 }
