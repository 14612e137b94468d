package online

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/admission/objects"
	"github.com/gantry-dev/gantry/config"
)

// What the evaluator counts reaches the webhook's /metrics under the
// names and labels it had when the counters were Prometheus's own.
func TestMetricsExported(t *testing.T) {
	cfg := config.Default()
	cfg.Admission.VerifySignatures = false
	reg := prometheus.NewPedanticRegistry()
	e, err := Build(cfg, Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	root := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"fn"},"spec":{"containers":[{"name":"c",
"image":"registry.example/f@sha256:` + strings.Repeat("a", 64) + `","securityContext":{"runAsUser":0,"runAsNonRoot":false,
"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]},"seccompProfile":{"type":"RuntimeDefault"}}}]}}`
	docs, err := objects.DecodeManifest(strings.NewReader(root))
	if err != nil || len(docs) != 1 || docs[0].Workload == nil {
		t.Fatalf("decode: %v %+v", err, docs)
	}
	// Two reviews: one nonRoot finding each, two Pod Security findings
	// each (runAsNonRoot=false, runAsUser=0).
	for range 2 {
		if d := e.Evaluate(context.Background(), admission.Request{Operation: "CREATE", Namespace: "fn", Workload: docs[0].Workload}); d.Allowed {
			t.Fatalf("a root container was admitted: %+v", d)
		}
	}
	want := `
# HELP gantry_admission_violations_total Rule violations found, by rule and namespace mode (enforce, warn, audit).
# TYPE gantry_admission_violations_total counter
gantry_admission_violations_total{mode="enforce",rule="nonRoot"} 2
gantry_admission_violations_total{mode="enforce",rule="podSecurity"} 4
# HELP gantry_admission_exemptions_total Exemptions applied to admission requests.
# TYPE gantry_admission_exemptions_total counter
gantry_admission_exemptions_total 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "gantry_admission_violations_total", "gantry_admission_exemptions_total"); err != nil {
		t.Fatal(err)
	}
}
