package chart

import (
	"encoding/json"
	"errors"
	"path/filepath"

	admregv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// MutatingWebhookAt is WebhookAt for the chart's MutatingWebhookConfiguration
// (tags resolved to verified digests, POST /mutate): rendered for the given
// function namespaces exactly as an install gets it, named name, every
// webhook pointed at url with caBundle.
func MutatingWebhookAt(root, name string, functionNamespaces []string, url string, caBundle []byte) (*admregv1.MutatingWebhookConfiguration, error) {
	nss := make([]any, len(functionNamespaces))
	for i, ns := range functionNamespaces {
		nss[i] = ns
	}
	out, err := RenderOnly(filepath.Join(root, ChartDir), Release{Name: "gantry", Namespace: "gantry-system"},
		map[string]any{"admission": map[string]any{"functionNamespaces": nss}}, "admission-webhook")
	if err != nil {
		return nil, err
	}
	docs, err := Documents(out)
	if err != nil {
		return nil, err
	}
	var mwc admregv1.MutatingWebhookConfiguration
	for _, d := range docs {
		if d["kind"] != "MutatingWebhookConfiguration" {
			continue
		}
		b, err := json.Marshal(d)
		if err != nil {
			return nil, err
		}
		if err := yaml.Unmarshal(b, &mwc); err != nil {
			return nil, err
		}
	}
	if len(mwc.Webhooks) == 0 {
		return nil, errors.New("the chart rendered no mutating webhook (admission.resolveTags off?)")
	}
	mwc.Name, mwc.Annotations = name, nil
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig = admregv1.WebhookClientConfig{URL: ptr.To(url), CABundle: caBundle}
	}
	return &mwc, nil
}
