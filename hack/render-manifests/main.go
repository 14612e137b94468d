// Command render-manifests writes manifests/gantry-admission.yaml and
// manifests/gantry-pipeline.yaml from the Helm chart, for people without Helm. Run from the repository root:
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
			for out, render := range map[string]func(string) ([]byte, error){
				chart.Manifests: chart.RenderManifests, chart.PipelineManifests: chart.RenderPipelineManifests,
			} {
				var b []byte
				if b, err = render(root); err != nil {
					break
				}
				out = filepath.Join(root, out)
				if err = os.MkdirAll(filepath.Dir(out), 0o755); err == nil {
					err = os.WriteFile(out, b, 0o644)
				}
				if err != nil {
					break
				}
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "render-manifests:", err)
		os.Exit(2)
	}
}
