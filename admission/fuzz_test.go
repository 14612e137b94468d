package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/gantry-dev/gantry/admission/objects"
	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/config"
)

// encodingSink checks that every audit record of a review encodes as one
// JSON line with an actor.
type encodingSink struct{}

func (encodingSink) Record(_ context.Context, e audit.Event) error {
	b, err := audit.Marshal(e)
	if err != nil || e.Actor == "" || e.Target == "" || bytes.Count(b, []byte("\n")) != 1 || !json.Valid(b) {
		panic(fmt.Sprintf("bad audit record %+v: %v", e, err))
	}
	return nil
}

// FuzzEvaluate feeds arbitrary objects of every kind through the policy
// (offline: no registry): it must never panic, a denial always says why,
// and the audit records of exemptions and break-glass always encode.
func FuzzEvaluate(f *testing.F) {
	f.Add("Pod", podJSON("p", `{"gantry.dev/break-glass-until":"2030-01-01T00:00:00Z"}`, `{"runAsUser":0}`, ctr("a", "r/x@sha256:"+strings.Repeat("a", 64), `{"privileged":true}`)), true)
	f.Add("Deployment", `{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"::bad::"}],"ephemeralContainers":[{"name":"e","image":"x"}]}}}}`, false)
	f.Add("CronJob", `{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"hostPID":true,"volumes":[{"name":"h","hostPath":{"path":"/"}}]}}}}}}`, true)
	f.Add("ReplicationController", `{"spec":{"template":null}}`, false)
	cfg := config.DefaultAdmission()
	cfg.VerifySignatures = false
	cfg.BreakGlass.Groups = []string{"sre"}
	cfg.Exemptions = []config.AdmissionExemption{{Image: "r/*", Rules: []string{"nonRoot"}, Reason: "fuzz"},
		{Group: "dev", Rules: []string{"podSecurity"}, Reason: "fuzz"}}
	e, err := New(cfg, Options{Audit: encodingSink{}})
	if err != nil {
		f.Fatal(err)
	}
	kinds := objects.Kinds()
	f.Fuzz(func(t *testing.T, kind, raw string, member bool) {
		var gvk schema.GroupVersionKind
		for _, k := range kinds {
			if k.Kind == kind {
				gvk = k
			}
		}
		w, err := objects.Decode(gvk, []byte(raw))
		if err != nil {
			return
		}
		groups := []string{"dev"}
		if member {
			groups = append(groups, "sre")
		}
		d := e.Evaluate(context.Background(), Request{Operation: "CREATE", Namespace: "fn", Groups: groups, Workload: w})
		if !d.Allowed && len(d.Violations) == 0 {
			t.Fatal("denied without a violation")
		}
		if len([]rune(d.Message())) > MaxMessageRunes {
			t.Fatal("message over the limit")
		}
	})
}
