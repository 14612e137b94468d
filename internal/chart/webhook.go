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
	var vwc admregv1.ValidatingWebhookConfiguration
	if err := renderedWebhook(root, functionNamespaces, "ValidatingWebhookConfiguration", &vwc); err != nil {
		return nil, err
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

// renderedWebhook renders the chart's admission-webhook templates for
// functionNamespaces and decodes the one object of kind into out.
func renderedWebhook(root string, functionNamespaces []string, kind string, out any) error {
	nss := make([]any, len(functionNamespaces))
	for i, ns := range functionNamespaces {
		nss[i] = ns
	}
	body, err := RenderOnly(filepath.Join(root, ChartDir), Release{Name: "gantry", Namespace: "gantry-system"},
		map[string]any{"admission": map[string]any{"functionNamespaces": nss}}, "admission-webhook")
	if err != nil {
		return err
	}
	docs, err := Documents(body)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if d["kind"] != kind {
			continue
		}
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		return yaml.Unmarshal(b, out)
	}
	return nil
}
