// Package testenv connects integration tests to the real daemons that
// hack/testenv starts (buildkitd, an OCI registry, etcd + kube-apiserver) and
// to the tool binaries it installs (buildctl, kubectl, cosign, nats-server,
// trivy, …).
//
// hack/testenv writes a shell-sourceable file, .testenv/env by default. Tests
// call Require, which loads that file or fails the test with a message that
// says how to create it: an integration test never skips itself because a
// daemon is missing. Only `go test -short` skips integration tests.
package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The keys of the env file. They double as environment variable names, so a
// shell that sourced the file sees the same values as the tests.
const (
	KeyDir           = "GANTRY_TESTENV_DIR"
	KeyBuildkitAddr  = "GANTRY_BUILDKIT_ADDR"
	KeyRegistry      = "GANTRY_REGISTRY"
	KeyBaseImage     = "GANTRY_BASE_IMAGE"
	KeyKubeconfig    = "KUBECONFIG"
	KeyKubeAPIServer = "GANTRY_KUBE_APISERVER"
	KeyEtcd          = "GANTRY_ETCD"
	KeyBuildctl      = "GANTRY_BUILDCTL"
	KeyKubectl       = "GANTRY_KUBECTL"
	KeyCosign        = "GANTRY_COSIGN"
	KeyNATSServer    = "GANTRY_NATS_SERVER"
	KeyKubeAPIBin    = "GANTRY_KUBE_APISERVER_BIN"
	KeyEtcdBin       = "GANTRY_ETCD_BIN"
	KeyTrivy         = "GANTRY_TRIVY"
	// The second cluster, where kube-controller-manager runs.
	KeyControllersKubeconfig    = "GANTRY_CONTROLLERS_KUBECONFIG"
	KeyKubeControllerManagerBin = "GANTRY_KUBE_CONTROLLER_MANAGER_BIN"
	// KeyCosign3 is the cosign v3 CLI (Sigstore bundles by default).
	KeyCosign3 = "GANTRY_COSIGN3"

	// EnvFileVar names an env file explicitly; otherwise Find looks for
	// .testenv/env in the enclosing module root.
	EnvFileVar = "GANTRY_TESTENV"
)

// Env is what the test environment offers.
type Env struct {
	Dir           string // state dir: pids, logs, data
	BuildkitAddr  string // e.g. unix:///…/buildkitd.sock
	Registry      string // host:port of the plain-HTTP registry on loopback
	BaseImage     string // repo@sha256:… of a busybox base image in Registry
	Kubeconfig    string // admin kubeconfig for the API server
	KubeAPIServer string // https URL of kube-apiserver
	Etcd          string // http URL of etcd
	Buildctl      string // tool binaries
	Kubectl       string
	Cosign        string // cosign v2 (tag-based .sig/.att by default)
	Cosign3       string // cosign v3 (bundles as OCI referrers by default)
	NATSServer    string
	KubeAPIBin    string
	EtcdBin       string
	Trivy         string // the trivy CLI at the version go.mod requires
	// ControllersKubeconfig is the admin kubeconfig of a second API server
	// (same etcd, another prefix) where kube-controller-manager runs the
	// Deployment, ReplicaSet and namespace controllers, each as its own
	// ServiceAccount. The first API server runs no controllers.
	ControllersKubeconfig    string
	KubeControllerManagerBin string
}

func (e *Env) fields() map[string]*string {
	return map[string]*string{
		KeyDir: &e.Dir, KeyBuildkitAddr: &e.BuildkitAddr, KeyRegistry: &e.Registry,
		KeyBaseImage: &e.BaseImage, KeyKubeconfig: &e.Kubeconfig, KeyKubeAPIServer: &e.KubeAPIServer,
		KeyEtcd: &e.Etcd, KeyBuildctl: &e.Buildctl, KeyKubectl: &e.Kubectl, KeyCosign: &e.Cosign,
		KeyNATSServer: &e.NATSServer, KeyKubeAPIBin: &e.KubeAPIBin, KeyEtcdBin: &e.EtcdBin,
		KeyTrivy: &e.Trivy, KeyControllersKubeconfig: &e.ControllersKubeconfig,
		KeyKubeControllerManagerBin: &e.KubeControllerManagerBin,
		KeyCosign3:                  &e.Cosign3,
	}
}

// Write stores e as `export KEY='value'` lines.
func (e *Env) Write(path string) error {
	f := e.fields()
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Written by hack/testenv up. Source it: . .testenv/env\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(*f[k]))
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Load reads an env file written by Write.
func Load(path string) (*Env, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	e := &Env{}
	f := e.fields()
	sc := bufio.NewScanner(fh)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kv, ok := strings.CutPrefix(line, "export ")
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected `export KEY='value'`", path, n)
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: missing '='", path, n)
		}
		v, err := shellUnquote(v)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if p, known := f[k]; known {
			*p = v
		}
	}
	return e, sc.Err()
}

// Find returns the env file to use: $GANTRY_TESTENV, or .testenv/env in the
// nearest directory above the working directory that holds Gantry's go.mod.
func Find() (string, error) {
	if p := os.Getenv(EnvFileVar); p != "" {
		return p, nil
	}
	// The state dir hack/testenv was told to use (GANTRY_TESTENV_DIR), as
	// it reads it: a relative one is relative to the repository root.
	state := os.Getenv("GANTRY_TESTENV_DIR")
	if filepath.IsAbs(state) {
		return filepath.Join(state, "env"), nil
	}
	if state == "" {
		state = ".testenv"
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.HasPrefix(string(b), "module github.com/gantry-dev/gantry\n") {
			return filepath.Join(dir, state, "env"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no Gantry module root above the working directory")
		}
		dir = parent
	}
}

// Open finds and loads the env file, for programs (benchmarks, the demo)
// that need the test environment outside `go test`.
func Open() (*Env, error) {
	path, err := Find()
	if err != nil {
		return nil, fmt.Errorf("test environment: %w; run `hack/testenv up` or set %s", err, EnvFileVar)
	}
	e, err := Load(path)
	if err != nil {
		return nil, fmt.Errorf("test environment not started (%v): run `hack/testenv up` (or `make testenv-up`) first", err)
	}
	return e, nil
}

// Require returns the test environment or fails t with instructions. Under
// `go test -short` it skips t, which is how unit-only runs are asked for.
func Require(t testing.TB) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the test environment (hack/testenv up); skipped by -short")
	}
	e, err := Open()
	if err != nil {
		t.Fatalf("%v; or use `go test -short` for unit tests only", err)
	}
	return e
}

// RequireControllers is Require for tests that need the workload
// controllers (kube-controller-manager): it fails t when the environment
// was started by an older hack/testenv without them.
func RequireControllers(t testing.TB) *Env {
	t.Helper()
	e := Require(t)
	if e.ControllersKubeconfig == "" {
		t.Fatalf("the test environment runs no kube-controller-manager (%s is empty): restart it with `hack/testenv down && hack/testenv up`", KeyControllersKubeconfig)
	}
	return e
}

// shellQuote quotes s for POSIX sh with single quotes.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellUnquote reverses shellQuote (and accepts bare words without quotes or
// spaces).
func shellUnquote(s string) (string, error) {
	var b strings.Builder
	for len(s) > 0 {
		switch {
		case s[0] == '\'':
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return "", errors.New("unterminated single quote")
			}
			b.WriteString(s[1 : 1+end])
			s = s[2+end:]
		case s[0] == '\\' && len(s) > 1:
			b.WriteByte(s[1])
			s = s[2:]
		case s[0] == ' ' || s[0] == '\t' || s[0] == '"' || s[0] == '$' || s[0] == '`':
			return "", fmt.Errorf("unsupported character %q in value", s[0])
		default:
			b.WriteByte(s[0])
			s = s[1:]
		}
	}
	return b.String(), nil
}

// RequireCosign3 returns the cosign v3 CLI of the test environment, or
// fails t. An environment started before hack/testenv built cosign v3 has
// no GANTRY_COSIGN3 line: the variable, set in the test's environment, is
// used then.
func RequireCosign3(t testing.TB, e *Env) string {
	t.Helper()
	if e.Cosign3 != "" {
		return e.Cosign3
	}
	if p := os.Getenv(KeyCosign3); p != "" {
		return p
	}
	t.Fatalf("the test environment has no cosign v3 CLI (%s is empty): restart it with `hack/testenv down && hack/testenv up`, or set %s", KeyCosign3, KeyCosign3)
	return ""
}
