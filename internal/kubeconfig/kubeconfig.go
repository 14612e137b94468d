// Package kubeconfig finds the Kubernetes client configuration, the same
// way for every command. It is its own package so that a command that only
// needs a REST config (gantry policy audit, in gantry-admission) does not
// link deploy's typed clients and their scheme of every API group.
package kubeconfig

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Load returns the client configuration: the kubeconfig file when one is
// named, else in-cluster credentials, else $KUBECONFIG or ~/.kube/config.
func Load(file string) (*rest.Config, error) {
	if file != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", file)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", file, err)
		}
		return rc, nil
	}
	if rc, err := rest.InClusterConfig(); err == nil {
		return rc, nil
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no in-cluster credentials and no usable kubeconfig (set the kubeconfig key or $KUBECONFIG): %w", err)
	}
	return rc, nil
}
