package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
)

// Versions of the tools the test environment builds. Changing one builds it
// anew into its own cache dir; old dirs can be deleted by hand.
// BuildKit's is the one hack/buildkit-rig/go.mod requires.
const (
	cosignVersion = "v2.6.5"
	// cosign3Version is the current cosign release line (Sigstore bundles
	// as OCI referrers by default), built beside v2 for interop tests.
	cosign3Version     = "v3.1.3"
	natsServerVersion  = "v2.15.2"
	staticcheckVersion = "v0.8.2"
	kubeVersion        = "v1.37.2"
)

// Debian packages the test environment needs, each with the file that shows
// it is installed.
var debianPackages = []struct {
	name, file string
	testsOnly  bool // not needed by the demo
}{
	{"runc", "runc", false},
	{"docker-registry", "docker-registry", false},
	{"busybox-static", "/bin/busybox", false},
	// For the dashboard's browser tests (driven with chromedp).
	{"chromium", "chromium", true},
	// The workflow contract test runs the workflow step scripts, which use
	// jq and curl.
	{"jq", "jq", true},
	{"curl", "curl", true},
}

// tools are the paths of installed binaries.
type tools struct {
	buildkitd, buildctl          string
	etcd, kubeAPIServer, kubectl string
	kubeControllerManager        string
	cosign, natsServer           string
	cosign3                      string
	staticcheck                  string
	trivy                        string
	runc, registry, busybox      string
}

func (r *rig) install() (*tools, error) {
	if err := installDebianPackages(r.demoOnly); err != nil {
		return nil, err
	}
	bin := filepath.Join(r.cache, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	t := &tools{busybox: "/bin/busybox"}
	var err error
	if t.runc, err = exec.LookPath("runc"); err != nil {
		return nil, err
	}
	if t.registry, err = exec.LookPath("docker-registry"); err != nil {
		return nil, err
	}

	// buildkitd and buildctl come from the nested hack/buildkit-rig module,
	// which holds the modules BuildKit shares with Gantry at Gantry's
	// versions: the packages both compile are compiled once (a cold build
	// of BuildKit alone took 523 CPU-seconds, 112 after Gantry's). Its
	// cache key is the hash of its go.mod and go.sum, so a bump rebuilds.
	bkDir := filepath.Join(r.root, "hack", "buildkit-rig")
	bkKey, err := moduleKey(bkDir)
	if err != nil {
		return nil, err
	}
	bkVersion, err := requiredVersion(filepath.Join(bkDir, "go.mod"), buildkitModule)
	if err != nil {
		return nil, err
	}
	bk := filepath.Join(bin, "buildkit-"+bkVersion+"-"+bkKey)
	if err := ensureBuilt(bk, "buildkitd + buildctl "+bkVersion, "~3-4 min", func(tmp string) error {
		return buildInModule(bkDir, tmp, "-s -w -X github.com/moby/buildkit/version.Version="+bkVersion,
			"github.com/moby/buildkit/cmd/buildkitd", "github.com/moby/buildkit/cmd/buildctl")
	}); err != nil {
		return nil, err
	}
	t.buildkitd, t.buildctl = filepath.Join(bk, "buildkitd"), filepath.Join(bk, "buildctl")

	// etcd, kube-apiserver, kube-controller-manager and kubectl come from
	// the nested hack/kube-rig module; its cache key is the hash of its
	// go.mod and go.sum, so a bump there rebuilds. The demo needs etcd,
	// kube-apiserver and kubectl; kube-controller-manager (a fifth of the
	// rig's compile: 293 of 1467 CPU-seconds with an empty build cache; only
	// the controller tests use it) is built on its own.
	rigDir := filepath.Join(r.root, "hack", "kube-rig")
	key, err := moduleKey(rigDir)
	if err != nil {
		return nil, err
	}
	kube := filepath.Join(bin, "kube-rig-"+key)
	if err := ensureBuilt(kube, "etcd + kube-apiserver + kubectl "+kubeVersion, kubeRigETA, func(tmp string) error {
		if err := buildKube(rigDir, tmp, "go.etcd.io/etcd/server/v3", "k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kubectl"); err != nil {
			return err
		}
		// etcd's main package is the module root, so its binary is "server".
		return os.Rename(filepath.Join(tmp, "server"), filepath.Join(tmp, "etcd"))
	}); err != nil {
		return nil, err
	}
	t.etcd, t.kubeAPIServer, t.kubectl = filepath.Join(kube, "etcd"), filepath.Join(kube, "kube-apiserver"), filepath.Join(kube, "kubectl")
	if t.kubeControllerManager, err = r.installControllerManager(bin, kube, rigDir, key); err != nil {
		return nil, err
	}

	for _, g := range []struct {
		dst  *string
		name string
		pkg  string
		ver  string
		eta  string
	}{
		{&t.cosign, "cosign", "github.com/sigstore/cosign/v2/cmd/cosign", cosignVersion, "~2 min"},
		{&t.cosign3, "cosign", "github.com/sigstore/cosign/v3/cmd/cosign", cosign3Version, "~3 min"},
		{&t.natsServer, "nats-server", "github.com/nats-io/nats-server/v2", natsServerVersion, "~1 min"},
		{&t.staticcheck, "staticcheck", "honnef.co/go/tools/cmd/staticcheck", staticcheckVersion, "~1 min"},
	} {
		dir := filepath.Join(bin, g.name+"-"+g.ver)
		if r.skip(dir, g.name+" "+g.ver) {
			continue
		}
		if err := ensureBuilt(dir, g.name+" "+g.ver, g.eta, func(tmp string) error {
			return run("", []string{"GOBIN=" + tmp}, "go", "install", "-trimpath", "-ldflags", "-s -w", g.pkg+"@"+g.ver)
		}); err != nil {
			return nil, err
		}
		*g.dst = filepath.Join(dir, g.name)
	}

	if t.trivy, err = r.installTrivy(bin); err != nil {
		return nil, err
	}
	return t, nil
}

// kubeRigETA and kcmETA are the first-build estimates printed with the
// progress lines (measured with an empty build cache on this 2-core machine
// kind; see README).
const (
	kubeRigETA = "~10-15 min on 2 cores, 2.4 GB RAM"
	kcmETA     = "~3-5 min"
)

// buildKube builds pkgs of the kube-rig module into dir, versioned as
// kubeVersion.
func buildKube(rigDir, dir string, pkgs ...string) error {
	v := "k8s.io/component-base/version"
	ld := fmt.Sprintf("-s -w -X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=37 -X k8s.io/client-go/pkg/version.gitVersion=%s",
		v, kubeVersion, v, v, kubeVersion)
	return buildInModule(rigDir, dir, ld, pkgs...)
}

// buildInModule builds pkgs of the nested module at modDir (a rig) into
// dir, compiled as Gantry's own packages are (-trimpath, this process's
// CGO_ENABLED and GOEXPERIMENT) so that the packages they share come from
// one build cache entry.
func buildInModule(modDir, dir, ldflags string, pkgs ...string) error {
	return run(modDir, nil, append([]string{"go", "build", "-trimpath", "-ldflags", ldflags, "-o", dir + "/"}, pkgs...)...)
}

// moduleKey is a rig's tool-cache key: the hash of its go.mod and go.sum,
// so that a bump there rebuilds.
func moduleKey(modDir string) (string, error) {
	return hashFiles(filepath.Join(modDir, "go.mod"), filepath.Join(modDir, "go.sum"))
}

// installControllerManager returns kube-controller-manager's path: the one
// beside kube-apiserver when an earlier testenv built all four binaries into
// one dir, else its own cache dir, built now unless this is `up demo` (then
// "", and the controllers' cluster is not started).
func (r *rig) installControllerManager(bin, kube, rigDir, key string) (string, error) {
	if p := filepath.Join(kube, "kube-controller-manager"); fileExists(p) {
		return p, nil
	}
	dir := filepath.Join(bin, "kube-controller-manager-"+key)
	if r.skip(dir, "kube-controller-manager "+kubeVersion) {
		return "", nil
	}
	if err := ensureBuilt(dir, "kube-controller-manager "+kubeVersion, kcmETA, func(tmp string) error {
		return buildKube(rigDir, tmp, "k8s.io/kubernetes/cmd/kube-controller-manager")
	}); err != nil {
		return "", err
	}
	return filepath.Join(dir, "kube-controller-manager"), nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// buildkitModule is the module buildkitd and buildctl are built from, at
// the version hack/buildkit-rig requires.
const buildkitModule = "github.com/moby/buildkit"

// trivyModule is the module whose CLI the scanner's Trivy-server tests and
// the scan benchmark run.
const trivyModule = "github.com/aquasecurity/trivy"

// installTrivy builds the trivy CLI at the Trivy version Gantry's go.mod
// requires, so the server the tests talk to and the CLI the benchmark times
// are the same code Gantry links. Its cache key is that version: a bump in
// go.mod builds it anew.
//
// The trivy command imports packages Gantry does not (Kubernetes scanning,
// the server), whose modules go.sum lacks; the build runs on a temporary
// copy of go.mod and go.sum (go's -modfile), so the real ones are never
// touched. The rest of go.mod's versions apply, as in Gantry's own build.
func (r *rig) installTrivy(bin string) (string, error) {
	gomod := filepath.Join(r.root, "go.mod")
	version, err := requiredVersion(gomod, trivyModule)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(bin, "trivy-"+version)
	if r.skip(dir, "trivy "+version) {
		return "", nil
	}
	if err := ensureBuilt(dir, "trivy "+version, "~3-4 min", func(tmp string) error {
		modDir, err := os.MkdirTemp("", "gantry-trivy-modfile-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(modDir)
		modFile := filepath.Join(modDir, "trivy.mod")
		for src, dst := range map[string]string{gomod: modFile, filepath.Join(r.root, "go.sum"): filepath.Join(modDir, "trivy.sum")} {
			b, err := os.ReadFile(src)
			if err != nil {
				return err
			}
			if err := os.WriteFile(dst, b, 0o644); err != nil {
				return err
			}
		}
		// Trivy's JSON code needs encoding/json/v2.
		env := []string{"GOEXPERIMENT=jsonv2"}
		if err := run(r.root, env, "go", "get", "-modfile="+modFile, trivyModule+"/cmd/trivy@"+version); err != nil {
			return err
		}
		return run(r.root, env, "go", "build", "-modfile="+modFile, "-trimpath",
			"-ldflags", "-s -w -X "+trivyModule+"/pkg/version/app.ver="+strings.TrimPrefix(version, "v"),
			"-o", filepath.Join(tmp, "trivy"), trivyModule+"/cmd/trivy")
	}); err != nil {
		return "", err
	}
	return filepath.Join(dir, "trivy"), nil
}

// requiredVersion returns the version of module that the go.mod at path
// requires.
func requiredVersion(path, module string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	f, err := modfile.Parse(path, b, nil)
	if err != nil {
		return "", err
	}
	for _, rep := range f.Replace {
		if rep.Old.Path == module {
			return "", fmt.Errorf("%s: %s is replaced (by %s); the trivy CLI is built from the required version only: remove the replace or build trivy by hand", path, module, rep.New.Path)
		}
	}
	for _, req := range f.Require {
		if req.Mod.Path == module {
			return req.Mod.Version, nil
		}
	}
	return "", fmt.Errorf("%s does not require %s", path, module)
}

// which installs what is missing and returns the path of one tool.
func (r *rig) which(name string) (string, error) {
	t, err := r.install()
	if err != nil {
		return "", err
	}
	paths := map[string]string{
		"buildkitd": t.buildkitd, "buildctl": t.buildctl, "etcd": t.etcd,
		"kube-apiserver": t.kubeAPIServer, "kube-controller-manager": t.kubeControllerManager, "kubectl": t.kubectl, "cosign": t.cosign, "cosign3": t.cosign3,
		"nats-server": t.natsServer, "staticcheck": t.staticcheck, "trivy": t.trivy, "runc": t.runc,
		"docker-registry": t.registry, "busybox": t.busybox,
	}
	if p, ok := paths[name]; ok {
		return p, nil
	}
	return "", fmt.Errorf("unknown tool %q (known: %s)", name, strings.Join(sortedKeys(paths), ", "))
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// skip reports whether a test-only tool is left out: only for `up demo`,
// and only when it is not built yet (a built one is still used).
func (r *rig) skip(dir, what string) bool {
	if !r.demoOnly {
		return false
	}
	if _, err := os.Stat(dir); err == nil {
		return false
	}
	say("skipping %s: the demo does not need it (make test builds it)", what)
	return true
}

// ensureBuilt runs build into a temporary dir beside dir and renames it into
// place, so an interrupted build never leaves a half-filled cache entry.
func ensureBuilt(dir, what, eta string, build func(tmp string) error) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	say("building %s (first time on this machine, %s)…", what, eta)
	start := time.Now()
	stop := progress(what, eta, start, time.Minute)
	defer stop()
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-"+filepath.Base(dir)+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := build(tmp); err != nil {
		return fmt.Errorf("building %s: %w", what, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	say("built %s in %s", what, time.Since(start).Round(time.Second))
	return nil
}

// progress prints a line every interval while what is being built, so a
// first run never sits silent for minutes; stop ends it.
func progress(what, eta string, start time.Time, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	tick := time.NewTicker(interval)
	go func() {
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				say("still building %s: %s so far (first build: %s)", what, time.Since(start).Round(time.Second), eta)
			}
		}
	}()
	return func() { close(done) }
}

func installDebianPackages(demoOnly bool) error {
	var missing []string
	for _, p := range debianPackages {
		if demoOnly && p.testsOnly {
			continue
		}
		if strings.HasPrefix(p.file, "/") {
			if _, err := os.Stat(p.file); err == nil {
				continue
			}
		} else if _, err := exec.LookPath(p.file); err == nil {
			continue
		}
		missing = append(missing, p.name)
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing Debian packages %s: install them as root (apt-get install %s)",
			strings.Join(missing, ", "), strings.Join(missing, " "))
	}
	say("installing Debian packages: %s", strings.Join(missing, " "))
	env := []string{"DEBIAN_FRONTEND=noninteractive"}
	if err := run("", env, "apt-get", "update", "-qq"); err != nil {
		return err
	}
	return run("", env, append([]string{"apt-get", "install", "-y", "-qq", "--no-install-recommends"}, missing...)...)
}

// run runs a command whose output goes to our stderr only when it fails.
func run(dir string, env []string, argv ...string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"CGO_ENABLED=0"}, env...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		os.Stderr.Write(tail(out.Bytes(), 40))
		return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return nil
}

func hashFiles(paths ...string) (string, error) {
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// tail returns the last n lines of b.
func tail(b []byte, n int) []byte {
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines) > n+1 {
		lines = lines[len(lines)-n-1:]
	}
	return bytes.Join(lines, nil)
}
