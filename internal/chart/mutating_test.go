package chart

import (
	"path/filepath"
	"reflect"
	"testing"
)

// The mutating webhook (tags resolved to verified digests) is registered
// with the validating webhook's exact scope, fails closed, has no side
// effects, is called again when a later mutating webhook adds a tag, and
// trusts the same CA; resolveTags off renders none.
func TestMutatingWebhookMatchesValidating(t *testing.T) {
	r := root(t)
	for _, c := range []struct {
		name   string
		values map[string]any
		want   bool
	}{
		{"certManager", map[string]any{"functionNamespaces": []any{"fn-a", "fn-b"}}, true},
		{"helm", map[string]any{"tls": map[string]any{"mode": "helm"}, "functionNamespaces": []any{"fn-a"}, "namespaceLabels": map[string]any{"gantry.dev/guarded": "true"}}, true},
		{"secret", map[string]any{"tls": map[string]any{"mode": "secret", "caBundle": "Q0E=", "existingSecret": "tls"}, "functionNamespaces": []any{"fn-a"}}, true},
		{"resolveTags off", map[string]any{"functionNamespaces": []any{"fn-a"}, "resolveTags": false}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := RenderOnly(filepath.Join(r, ChartDir), Release{Name: "gantry", Namespace: "gantry-system"},
				map[string]any{"admission": c.values}, "admission-")
			if err != nil {
				t.Fatal(err)
			}
			docs, err := Documents(out)
			if err != nil {
				t.Fatal(err)
			}
			vwcs, mwcs := byKind(t, docs, "ValidatingWebhookConfiguration"), byKind(t, docs, "MutatingWebhookConfiguration")
			if len(vwcs) != 1 {
				t.Fatalf("%d validating webhook configurations", len(vwcs))
			}
			if !c.want {
				if len(mwcs) != 0 {
					t.Fatal("mutating webhook rendered with resolveTags off")
				}
				return
			}
			if len(mwcs) != 1 {
				t.Fatalf("%d mutating webhook configurations", len(mwcs))
			}
			v, m := get(vwcs[0], "webhooks", 0), get(mwcs[0], "webhooks", 0)
			if get(mwcs[0], "webhooks", 1) != nil {
				t.Fatal("more than one mutating webhook")
			}
			for k, want := range map[string]any{"name": "mutate.admission.gantry.dev", "failurePolicy": "Fail", "sideEffects": "None",
				"reinvocationPolicy": "IfNeeded", "matchPolicy": "Equivalent"} {
				if get(m, k) != want {
					t.Errorf("%s: %v, want %v", k, get(m, k), want)
				}
			}
			if get(m, "clientConfig", "service", "path") != "/mutate" || get(v, "clientConfig", "service", "path") != "/validate" {
				t.Errorf("paths: %v %v", get(m, "clientConfig", "service"), get(v, "clientConfig", "service"))
			}
			for _, k := range []string{"namespaceSelector", "objectSelector", "rules", "timeoutSeconds", "admissionReviewVersions"} {
				if !reflect.DeepEqual(get(m, k), get(v, k)) {
					t.Errorf("%s differs:\nmutating   %v\nvalidating %v", k, get(m, k), get(v, k))
				}
			}
			if !reflect.DeepEqual(get(m, "clientConfig", "caBundle"), get(v, "clientConfig", "caBundle")) ||
				!reflect.DeepEqual(get(mwcs[0], "metadata", "annotations"), get(vwcs[0], "metadata", "annotations")) {
				t.Error("the two webhooks do not trust the same CA")
			}
			if c.name == "helm" && get(m, "namespaceSelector", "matchLabels", "gantry.dev/guarded") != "true" {
				t.Errorf("namespaceLabels not rendered: %v", get(m, "namespaceSelector"))
			}
		})
	}
	mwc, err := MutatingWebhookAt(r, "x", []string{"fn"}, "https://127.0.0.1:1/mutate", []byte("ca"))
	if err != nil || len(mwc.Webhooks) != 1 || *mwc.Webhooks[0].ClientConfig.URL != "https://127.0.0.1:1/mutate" ||
		mwc.Webhooks[0].ReinvocationPolicy == nil || *mwc.Webhooks[0].ReinvocationPolicy != "IfNeeded" {
		t.Fatalf("MutatingWebhookAt: %+v %v", mwc, err)
	}
}
