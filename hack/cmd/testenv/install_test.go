package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"

	"github.com/gantry-dev/gantry/internal/testenv"
)

func TestRequiredVersion(t *testing.T) {
	cases := []struct {
		name, gomod, want, wantErr string
	}{
		{"block require", "module x\n\ngo 1.26\n\nrequire (\n\tgithub.com/aquasecurity/trivy v0.74.0\n\tgithub.com/aquasecurity/trivy-db v0.0.0-20260813095258-0e0340a01b57\n)\n", "v0.74.0", ""},
		{"indirect", "module x\n\nrequire github.com/aquasecurity/trivy v0.75.1 // indirect\n", "v0.75.1", ""},
		{"only a module with the same prefix", "module x\n\nrequire github.com/aquasecurity/trivy-db v0.0.1\n", "", "does not require github.com/aquasecurity/trivy"},
		{"replaced", "module x\n\nrequire github.com/aquasecurity/trivy v0.74.0\n\nreplace github.com/aquasecurity/trivy => ../trivy\n", "", "is replaced (by ../trivy)"},
		{"not a go.mod", "module x\nrequire (\n", "", "go.mod"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "go.mod")
			if err := os.WriteFile(p, []byte(c.gomod), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := requiredVersion(p, trivyModule)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("requiredVersion = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// The repository's own go.mod names the version the trivy CLI is built at.
func TestRequiredVersionOfThisModule(t *testing.T) {
	got, err := requiredVersion("../../../go.mod", trivyModule)
	if err != nil || !strings.HasPrefix(got, "v0.") {
		t.Fatalf("requiredVersion(go.mod) = %q, %v", got, err)
	}
}

// hack/buildkit-rig holds every module it shares with Gantry at Gantry's
// version (or newer, where BuildKit requires newer): a module Gantry has
// raised without the rig following would make the two builds compile the
// packages they share twice, silently. Raise it in the rig too:
//
//	cd hack/buildkit-rig && go get <module>@<Gantry's version> && go mod tidy
func TestBuildkitRigAlignedWithGantry(t *testing.T) {
	read := func(path string) map[string]string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := modfile.Parse(path, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, r := range f.Require {
			out[r.Mod.Path] = r.Mod.Version
		}
		return out
	}
	gantry, rig := read("../../../go.mod"), read("../../buildkit-rig/go.mod")
	if v, ok := rig[buildkitModule]; !ok || !semver.IsValid(v) {
		t.Fatalf("hack/buildkit-rig/go.mod requires %s at %q", buildkitModule, v)
	}
	shared := 0
	for m, gv := range gantry {
		rv, ok := rig[m]
		if !ok {
			continue
		}
		shared++
		if semver.Compare(gv, rv) > 0 {
			t.Errorf("%s: Gantry requires %s, hack/buildkit-rig %s", m, gv, rv)
		}
	}
	if shared < 50 {
		t.Fatalf("only %d modules shared: is hack/buildkit-rig/go.mod tidy?", shared)
	}
}

// A running environment's env file gains new tool paths (and only those
// change) without its daemons being touched.
func TestSetPathsRefreshesTools(t *testing.T) {
	tl := &tools{buildctl: "/c/bk/buildctl", kubectl: "/c/k/kubectl", cosign: "/c/cosign", natsServer: "/c/nats",
		kubeAPIServer: "/c/k/kube-apiserver", etcd: "/c/k/etcd", trivy: "/c/trivy-v0.74.0/trivy"}
	env := &testenv.Env{Registry: "127.0.0.1:5000", BuildkitAddr: "unix:///s.sock"}
	if !tl.setPaths(env) {
		t.Fatal("first setPaths reported no change")
	}
	if env.Trivy != tl.trivy || env.Buildctl != tl.buildctl || env.EtcdBin != tl.etcd || env.Registry != "127.0.0.1:5000" {
		t.Fatalf("env after setPaths: %+v", env)
	}
	if tl.setPaths(env) {
		t.Fatal("second setPaths reported a change: `up` would rewrite the env file every time")
	}
	tl.trivy = "/c/trivy-v0.75.0/trivy"
	if !tl.setPaths(env) || env.Trivy != tl.trivy {
		t.Fatalf("a bumped tool did not reach the env: %+v", env)
	}
}

// kube-controller-manager is found beside kube-apiserver when an earlier
// testenv built the four kube binaries into one dir; `up demo` on a machine
// without it neither builds it nor creates its cache dir.
func TestControllerManagerInstall(t *testing.T) {
	bin := t.TempDir()
	rigDir := filepath.Join(bin, "no-kube-rig-module") // building would fail: nothing may be built
	kube := filepath.Join(bin, "kube-rig-k")
	if err := os.MkdirAll(kube, 0o755); err != nil {
		t.Fatal(err)
	}

	demo := &rig{demoOnly: true}
	got, err := demo.installControllerManager(bin, kube, rigDir, "k")
	if err != nil || got != "" {
		t.Fatalf("up demo without kube-controller-manager: %q, %v; want \"\", nil", got, err)
	}
	if _, err := os.Stat(filepath.Join(bin, "kube-controller-manager-k")); !os.IsNotExist(err) {
		t.Fatalf("up demo created the kube-controller-manager cache dir (%v)", err)
	}

	legacy := filepath.Join(kube, "kube-controller-manager")
	if err := os.WriteFile(legacy, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*rig{{demoOnly: true}, {}} {
		if got, err := r.installControllerManager(bin, kube, rigDir, "k"); err != nil || got != legacy {
			t.Fatalf("demoOnly=%v with the binary beside kube-apiserver: %q, %v; want %q", r.demoOnly, got, err, legacy)
		}
	}
	// Without it, a full install builds it (in the missing module: an error
	// that names what was being built).
	if err := os.Remove(legacy); err != nil {
		t.Fatal(err)
	}
	if _, err := (&rig{}).installControllerManager(bin, kube, rigDir, "k"); err == nil || !strings.Contains(err.Error(), "building kube-controller-manager") {
		t.Fatalf("full install without the binary: %v, want a build of kube-controller-manager", err)
	}
}
