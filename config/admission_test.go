package config

import (
	"strings"
	"testing"
	"time"
)

func TestAdmissionValidate(t *testing.T) {
	if err := func() error { a := DefaultAdmission(); return a.Validate() }(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for _, c := range []struct {
		name string
		edit func(*Admission)
		want string
	}{
		{"budget over the webhook limit", func(a *Admission) { a.Budget = 31 * time.Second }, "admission.budget"},
		{"tiny body", func(a *Admission) { a.MaxBodyBytes = 10 }, "maxBodyBytes"},
		{"cert without key", func(a *Admission) { a.TLS.CertFile = "c" }, "set together"},
		{"bad PSS version", func(a *Admission) { a.PodSecurity.Version = "1.30" }, "podSecurity.version"},
		{"privileged level", func(a *Admission) { a.Namespaces = []AdmissionNamespace{{Name: "x", Level: "privileged"}} }, "privileged is never allowed"},
		{"bad namespace mode", func(a *Admission) { a.Namespaces = []AdmissionNamespace{{Name: "x", Mode: "off"}} }, "namespaces[0].mode"},
		{"duplicate namespace", func(a *Admission) { a.Namespaces = []AdmissionNamespace{{Name: "x"}, {Name: "x"}} }, "listed twice"},
		{"exemption without reason", func(a *Admission) { a.Exemptions = []AdmissionExemption{{Namespace: "x"}} }, "reason is required"},
		{"exemption with two selectors", func(a *Admission) { a.Exemptions = []AdmissionExemption{{Namespace: "x", User: "u", Reason: "r"}} }, "exactly one"},
		{"exemption of every image", func(a *Admission) { a.Exemptions = []AdmissionExemption{{Image: "*", Reason: "r"}} }, "every image"},
		{"bad image pattern", func(a *Admission) { a.Exemptions = []AdmissionExemption{{Image: "[", Reason: "r"}} }, "not a valid pattern"},
		{"bad service account", func(a *Admission) { a.Exemptions = []AdmissionExemption{{ServiceAccount: "x", Reason: "r"}} }, "namespace/name"},
		{"unknown rule", func(a *Admission) {
			a.Exemptions = []AdmissionExemption{{User: "u", Rules: []string{"all"}, Reason: "r"}}
		}, "not a rule"},
		{"break-glass without annotation", func(a *Admission) { a.BreakGlass.Groups = []string{"g"}; a.BreakGlass.Annotation = "" }, "annotation is required"},
		{"audit every second", func(a *Admission) { a.Audit.Interval = time.Second }, "admission.audit.interval must be 0 (off) or at least 10s"},
		{"audit without request timeout", func(a *Admission) { a.Audit.RequestTimeout = 0 }, "admission.audit.requestTimeout must be positive"},
	} {
		a := DefaultAdmission()
		c.edit(&a)
		if err := a.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

func TestAdmissionFromFileAndEnv(t *testing.T) {
	f := writeFile(t, "admission:\n  mode: warn\n  exemptions:\n    - namespace: legacy\n      reason: migrating\n")
	cfg, err := Load(Source{File: f, Env: []string{"GANTRY_ADMISSION_REQUIRE_DIGEST=false", "GANTRY_ADMISSION_POD_SECURITY_LEVEL=baseline"}})
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Admission
	if a.Mode != "warn" || a.PodSecurity.Level != "baseline" || a.RequireDigest || len(a.Exemptions) != 1 || !a.VerifySignatures {
		t.Fatalf("%+v", a)
	}
	if _, err := Load(Source{File: writeFile(t, "admission:\n  mode: off\n")}); err == nil || !strings.Contains(err.Error(), "admission.mode") {
		t.Fatalf("bad mode: %v", err)
	}
}
