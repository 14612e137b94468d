package chart

import (
	"errors"

	admregv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/utils/ptr"
)

// MutatingWebhookAt is WebhookAt for the chart's MutatingWebhookConfiguration
// (tags resolved to verified digests, POST /mutate): rendered for the given
// function namespaces exactly as an install gets it, named name, every
// webhook pointed at url with caBundle.
func MutatingWebhookAt(root, name string, functionNamespaces []string, url string, caBundle []byte) (*admregv1.MutatingWebhookConfiguration, error) {
	var mwc admregv1.MutatingWebhookConfiguration
	if err := renderedWebhook(root, functionNamespaces, "MutatingWebhookConfiguration", &mwc); err != nil {
		return nil, err
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
