package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/chart"
)

// TestOwnManifestsPassPolicyCheck runs `gantry policy check` on Gantry's
// own rendered manifests: every workload Gantry installs passes the policy
// Gantry enforces (signatures aside: the check is offline).
func TestOwnManifestsPassPolicyCheck(t *testing.T) {
	root, err := chart.Root(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		file      string
		workloads []string
	}{
		{chart.Manifests, []string{"Deployment gantry-system/gantry-admission"}},
		{chart.PipelineManifests, []string{"Deployment gantry-system/gantry-receiver", "Deployment gantry-system/gantry-worker"}},
	} {
		var out, errb bytes.Buffer
		code := run([]string{"policy", "check", "--offline", "-f", filepath.Join(root, m.file)}, &out, &errb, nil)
		if code != 0 {
			t.Fatalf("gantry policy check %s: exit %d\n%s%s", m.file, code, out.String(), errb.String())
		}
		for _, w := range m.workloads {
			if !strings.Contains(out.String(), "ALLOW  "+w) {
				t.Errorf("%s: %s was not checked and allowed:\n%s", m.file, w, out.String())
			}
		}
		if strings.Contains(out.String(), "DENY") {
			t.Errorf("%s: a workload is denied:\n%s", m.file, out.String())
		}
	}
}
