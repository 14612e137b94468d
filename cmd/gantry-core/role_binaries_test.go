package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/gantry-dev/gantry/internal/cmdtable"
	"github.com/gantry-dev/gantry/internal/rolebin"
	"github.com/gantry-dev/gantry/internal/testenv"
)

// roleExcludes are module path prefixes a role binary must not link: what
// makes the role worth a binary of its own.
var roleExcludes = map[string][]string{
	cmdtable.RoleAdmission: {"github.com/aquasecurity/", "github.com/moby/buildkit/", "helm.sh/"},
	// A build is a client of buildkitd and the registry, no server: no
	// queue (NATS), no metrics registry (Prometheus), whose package init
	// every `gantry build` would pay for.
	cmdtable.RoleBuild: {"github.com/aquasecurity/", "helm.sh/", "k8s.io/client-go/", "github.com/sigstore/",
		"github.com/nats-io/", "github.com/prometheus/", "encoding/gob"},
	// An offline check: the policy and Kubernetes' types, no registry
	// verifier, cluster client, queue or metrics registry.
	cmdtable.RolePolicy: {"github.com/aquasecurity/", "github.com/moby/buildkit/", "helm.sh/", "k8s.io/client-go/",
		"github.com/sigstore/", "github.com/gantry-dev/gantry/admission/online", "github.com/gantry-dev/gantry/signer",
		"github.com/nats-io/", "github.com/prometheus/", "encoding/gob"},
}

func TestRoleBinariesLinkOnlyTheirRole(t *testing.T) {
	t.Parallel()
	gobin := goTool(t)
	for role, excluded := range roleExcludes {
		out, err := exec.Command(gobin, "list", "-deps", "-tags", "gantry_role_"+role, ".").Output()
		if err != nil {
			t.Fatalf("go list -tags gantry_role_%s: %v", role, err)
		}
		for dep := range strings.Lines(string(out)) {
			for _, x := range excluded {
				if strings.HasPrefix(dep, x) {
					t.Errorf("gantry-%s links %s", role, strings.TrimSpace(dep))
				}
			}
		}
	}
}

func goTool(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	return gobin
}

// The role binaries, built as make build builds them, answer for exactly
// the commands the front's table gives them, with the help the table
// holds; and the front, with them beside it, runs each command in its
// role's binary.
func TestRoleBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries")
	}
	t.Parallel()
	gobin := goTool(t)
	dir := t.TempDir()
	// The binaries of the last run are put back first: go build links
	// again unless one is exactly what this tree links to (its build ID).
	bins := []string{"gantry"}
	for role := range roleExcludes {
		bins = append(bins, "gantry-"+role)
	}
	cache := testenv.OpenBinCache(t, "../..", "role-binaries")
	cache.Seed(t, dir, bins...)
	// Linking is mostly serial: the three builds side by side take about
	// as long as the largest.
	var builds errgroup.Group
	build := func(out, pkg string, tags ...string) {
		builds.Go(func() error {
			args := []string{"build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, out)}
			if len(tags) > 0 {
				args = append(args, "-tags", strings.Join(tags, ","))
			}
			cmd := exec.Command(gobin, append(args, pkg)...)
			cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2", "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("go build %s: %v\n%s", out, err, b)
			}
			return nil
		})
	}
	build("gantry", "../gantry")
	for role := range roleExcludes {
		build("gantry-"+role, ".", "gantry_role_"+role)
	}
	if err := builds.Wait(); err != nil {
		t.Fatal(err)
	}
	cache.Store(t, dir, bins...)
	tabJSON, err := os.ReadFile(frontTablePath)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := cmdtable.Parse(tabJSON)
	if err != nil {
		t.Fatal(err)
	}
	runBin := func(bin string, stdin string, args ...string) (int, string, string) {
		cmd := exec.Command(filepath.Join(dir, bin), args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String(), errb.String()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, out.String(), errb.String()
	}
	shared := map[string]bool{"": true, "version": true, "help": true, "completion": true}
	// runs reports whether the binary of role bin runs c (as its role, or
	// as a narrower role a flag selects).
	runs := func(bin string, c cmdtable.Command) bool {
		if rolebin.Implements(bin, c.Role) {
			return true
		}
		for _, r := range c.FlagRoles {
			if rolebin.Implements(bin, r) {
				return true
			}
		}
		return false
	}
	// has reports whether the binary of role bin has a command at or under
	// path (a group it has, for some of its subcommands).
	has := func(bin, path string) bool {
		for p, c := range tab.Commands {
			if (p == path || strings.HasPrefix(p, path+" ")) && runs(bin, c) {
				return true
			}
		}
		return false
	}
	for path, c := range tab.Commands {
		top, _, _ := strings.Cut(path, " ")
		for role := range roleExcludes {
			code, out, stderr := runBin("gantry-"+role, "", append(strings.Fields(path), "--help")...)
			switch {
			case path == "":
				// The root's help lists the role's commands only.
				if code != 0 || !strings.Contains(out, "Usage:\n  gantry [command]") {
					t.Errorf("gantry-%s --help: exit %d, %q", role, code, out)
				}
			case runs(role, c) || shared[top]:
				if code != 0 || out != c.Help {
					t.Errorf("gantry-%s %s --help: exit %d, stderr %q; help equal to the table's: %v", role, path, code, stderr, out == c.Help)
				}
			case !c.Runnable && has(role, path):
				// A group the role has part of: its help lists that part.
				if code != 0 || !strings.Contains(out, "Available Commands:") {
					t.Errorf("gantry-%s %s --help: exit %d, %q", role, path, code, out)
				}
			case has(role, top):
				// A command of a group the role has part of: cobra answers
				// with the group's help, never this command's.
				if out == c.Help {
					t.Errorf("gantry-%s has %q: it belongs to %s", role, path, c.Role)
				}
			default:
				if code != 2 || !strings.Contains(stderr, `unknown command "`+top+`"`) {
					t.Errorf("gantry-%s has %q (exit %d, stderr %q): it belongs to %s", role, path, code, stderr, c.Role)
				}
			}
		}
	}

	// Through the front, with no gantry-core installed: each command runs
	// in its role's binary, for real.
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"fn"},"spec":{"containers":[{"name":"c",
"image":"registry.example/f@sha256:` + strings.Repeat("a", 64) + `","securityContext":{"runAsNonRoot":true,
"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]},"seccompProfile":{"type":"RuntimeDefault"}}}]}}`
	code, out, stderr := runBin("gantry", pod, "policy", "check", "-f", "-", "--offline", "-o", "json")
	var res struct{ Allowed bool }
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || !res.Allowed {
		t.Errorf("gantry policy check: exit %d, %q, stderr %q (%v)", code, out, stderr, err)
	}
	root := strings.Replace(pod, `"runAsNonRoot":true`, `"runAsUser":0`, 1)
	if code, out, _ := runBin("gantry", root, "policy", "check", "-f", "-", "--offline"); code != 1 || !strings.Contains(out, "deny") {
		t.Errorf("gantry policy check, root container: exit %d, %q", code, out)
	}
	if code, out, _ := runBin("gantry", "FROM scratch\nCOPY x /x\n", "lint", "-", "--output", "json"); code != 1 || !strings.Contains(out, "gantry-root-user") {
		t.Errorf("gantry lint: exit %d, %q", code, out)
	}
	// A command neither role has, with no gantry-core: exit 2, naming it.
	if code, _, stderr := runBin("gantry", "", "scan", "img"); code != 2 || !strings.Contains(stderr, "gantry-core, which is not installed") {
		t.Errorf("gantry scan without gantry-core: exit %d, %q", code, stderr)
	}

	// A check that needs the registry runs in gantry-admission: with
	// signatures to verify and no signerPolicy, the admission binary's
	// verifier refuses the image (gantry-policy links no verifier, so only
	// gantry-admission can say this). The front sends it there; given to
	// gantry-policy itself, it is handed on.
	for _, bin := range []string{"gantry", "gantry-policy"} {
		code, out, stderr = runBin(bin, pod, "policy", "check", "-f", "-")
		if code != 1 || !strings.Contains(out, "admission.signerPolicy") {
			t.Errorf("%s policy check (online), in gantry-admission: exit %d, %q, stderr %q", bin, code, out, stderr)
		}
	}
	// Without gantry-admission (and gantry-core), an offline check still
	// runs, in gantry-policy; an online one says what is missing.
	if err := os.Remove(filepath.Join(dir, "gantry-admission")); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := runBin("gantry", pod, "policy", "check", "-f", "-", "--offline"); code != 0 || !strings.Contains(out, "allow") {
		t.Errorf("gantry policy check --offline with gantry-policy alone: exit %d, %q, stderr %q", code, out, stderr)
	}
	for bin, want := range map[string]string{"gantry": "gantry-admission or gantry-core, which is not installed",
		"gantry-policy": "without --offline, this command is implemented by gantry-admission or gantry-core, which is not installed"} {
		if code, _, stderr := runBin(bin, pod, "policy", "check", "-f", "-"); code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("%s policy check (online) with gantry-policy alone: exit %d, %q", bin, code, stderr)
		}
	}
}
