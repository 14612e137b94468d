// Command render-manifests writes manifests/gantry-admission.yaml from the
// Helm chart, for people without Helm. Run from the repository root:
//
//	go run ./hack/render-manifests
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/gantry-dev/gantry/internal/chart"
)

func main() {
	wd, err := os.Getwd()
	if err == nil {
		var root string
		if root, err = chart.Root(wd); err == nil {
			var b []byte
			if b, err = chart.RenderManifests(root); err == nil {
				out := filepath.Join(root, chart.Manifests)
				if err = os.MkdirAll(filepath.Dir(out), 0o755); err == nil {
					err = os.WriteFile(out, b, 0o644)
				}
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "render-manifests:", err)
		os.Exit(2)
	}
}
