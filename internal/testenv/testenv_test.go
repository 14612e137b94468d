package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteLoadRoundTrip(t *testing.T) {
	want := &Env{
		Dir:          "/tmp/state dir/with 'quotes'",
		BuildkitAddr: "unix:///run/x.sock",
		Registry:     "127.0.0.1:5000",
		BaseImage:    "127.0.0.1:5000/gantry/base@sha256:abc",
		Kubeconfig:   "/k/config",
		Trivy:        "/cache/bin/trivy-v0.74.0/trivy",
	}
	path := filepath.Join(t.TempDir(), "env")
	if err := want.Write(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *want {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

func TestLoadRejectsMalformedLines(t *testing.T) {
	for name, content := range map[string]string{
		"no export":     "GANTRY_REGISTRY=x\n",
		"no equals":     "export GANTRY_REGISTRY\n",
		"open quote":    "export GANTRY_REGISTRY='x\n",
		"command subst": "export GANTRY_REGISTRY=$(id)\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "env")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(path); err == nil {
				t.Fatalf("Load(%q) succeeded, want an error", content)
			}
		})
	}
}

func TestFindHonoursExplicitFile(t *testing.T) {
	t.Setenv(EnvFileVar, "/explicit/env")
	got, err := Find()
	if err != nil || got != "/explicit/env" {
		t.Fatalf("Find() = %q, %v", got, err)
	}
}

func TestFindWalksUpToModuleRoot(t *testing.T) {
	t.Setenv(EnvFileVar, "")
	got, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs("../..")
	if want := filepath.Join(root, ".testenv", "env"); got != want {
		t.Fatalf("Find() = %q, want %q", got, want)
	}
}
