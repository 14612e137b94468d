package chart

import (
	"encoding/json"
	"errors"
	"path/filepath"

	admregv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// WebhookAt renders the chart's ValidatingWebhookConfiguration for the given
// function namespaces, exactly as an install would get it, names it name and
// points every webhook at url with caBundle instead of the in-cluster
// Service (and without cert-manager's injection annotation). Tests and the
// demo register it with a real API server in front of a webhook on loopback.
func WebhookAt(root, name string, functionNamespaces []string, url string, caBundle []byte) (*admregv1.ValidatingWebhookConfiguration, error) {
	nss := make([]any, len(functionNamespaces))
	for i, ns := range functionNamespaces {
		nss[i] = ns
	}
	out, err := Render(filepath.Join(root, ChartDir), Release{Name: "gantry", Namespace: "gantry-system"},
		map[string]any{"admission": map[string]any{"functionNamespaces": nss}})
	if err != nil {
		return nil, err
	}
	docs, err := Documents(out)
	if err != nil {
		return nil, err
	}
	var vwc admregv1.ValidatingWebhookConfiguration
	for _, d := range docs {
		if d["kind"] != "ValidatingWebhookConfiguration" {
			continue
		}
		b, err := json.Marshal(d)
		if err != nil {
			return nil, err
		}
		if err := yaml.Unmarshal(b, &vwc); err != nil {
			return nil, err
		}
	}
	if len(vwc.Webhooks) == 0 {
		return nil, errors.New("the chart rendered no webhook")
	}
	vwc.Name, vwc.Annotations = name, nil
	for i := range vwc.Webhooks {
		vwc.Webhooks[i].ClientConfig = admregv1.WebhookClientConfig{URL: ptr.To(url), CABundle: caBundle}
	}
	return &vwc, nil
}
