package config

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Deploy configures the deploy stage (`gantry deploy` and the pipeline):
// where functions go and how their pods are hardened. Defaults are the
// secure choice: non-root user 1000, read-only root file system, rollout
// awaited, conflicting field owners overridden by Gantry (the source of
// truth for the objects it applies).
type Deploy struct {
	// Namespace is the function namespace (OpenFaaS: openfaas-fn).
	Namespace string `yaml:"namespace"`
	// Mode picks the object applied: auto (an OpenFaaS Function when the
	// functions.openfaas.com CRD is installed, else a Deployment and a
	// Service), kubernetes (always Deployment + Service) or openfaas
	// (always a Function; an error when the CRD is missing).
	Mode string `yaml:"mode" allowed:"auto,kubernetes,openfaas"`
	// Kubeconfig is the kubeconfig file. Empty: in-cluster service account
	// credentials, else $KUBECONFIG / ~/.kube/config.
	Kubeconfig string `yaml:"kubeconfig"`
	// RequestTimeout bounds each API server request.
	RequestTimeout time.Duration `yaml:"requestTimeout"`
	// ForceConflicts takes ownership of fields another field manager set
	// (e.g. a hand-made `kubectl edit`); false makes such a deploy fail
	// with the conflicting fields named.
	ForceConflicts bool `yaml:"forceConflicts"`
	// WaitForRollout makes a deploy wait until the new pods are available.
	WaitForRollout bool `yaml:"waitForRollout"`
	// RolloutTimeout bounds that wait.
	RolloutTimeout time.Duration `yaml:"rolloutTimeout"`
	// RunAsUser and RunAsGroup are the non-zero ids the containers run as,
	// whatever the image's USER says.
	RunAsUser  int64 `yaml:"runAsUser"`
	RunAsGroup int64 `yaml:"runAsGroup"`
	// Port is the port the function listens on (the OpenFaaS watchdog's
	// 8080); the Service exposes it under the same number.
	Port int `yaml:"port"`
	// TmpSizeLimit bounds the writable emptyDir mounted at /tmp (the root
	// file system is read-only).
	TmpSizeLimit string `yaml:"tmpSizeLimit"`
	// DefaultResources apply to functions that set none.
	DefaultResources DeployResources `yaml:"defaultResources"`
	// Tenants is what each pushing repository may do: the Secrets it may
	// mount, its own namespace (see Tenants).
	Tenants Tenants `yaml:"tenants"`
}

// DeployResources are Kubernetes quantities (e.g. 100m, 128Mi).
type DeployResources struct {
	CPURequest    string `yaml:"cpuRequest"`
	MemoryRequest string `yaml:"memoryRequest"`
	CPULimit      string `yaml:"cpuLimit"`
	MemoryLimit   string `yaml:"memoryLimit"`
}

// DefaultDeploy returns the deploy section's defaults.
func DefaultDeploy() Deploy {
	return Deploy{
		Namespace:      "openfaas-fn",
		Mode:           "auto",
		RequestTimeout: 30 * time.Second,
		ForceConflicts: true,
		WaitForRollout: true,
		RolloutTimeout: 5 * time.Minute,
		RunAsUser:      1000,
		RunAsGroup:     1000,
		Port:           8080,
		TmpSizeLimit:   "64Mi",
		DefaultResources: DeployResources{
			CPURequest:    "50m",
			MemoryRequest: "64Mi",
			MemoryLimit:   "128Mi",
		},
	}
}

// isDNS1123Label reports whether s is a DNS-1123 label: 1 to 63
// lower-case letters, digits and '-', starting and ending with a letter or
// digit. A loop, not a regexp: every gantry binary loads its configuration
// at start, and compiling the counted repetition {0,61} took ~2 ms of each
// start-up (perf, gantry-policy).
func isDNS1123Label(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// Validate checks the values Kubernetes would otherwise refuse at the first
// deploy.
func (d *Deploy) Validate() error {
	var errs []error
	if !isDNS1123Label(d.Namespace) {
		errs = append(errs, fmt.Errorf("deploy.namespace %q must be a DNS-1123 label (lower-case letters, digits, '-', at most 63)", d.Namespace))
	}
	if d.RequestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("deploy.requestTimeout must be positive, got %s", d.RequestTimeout))
	}
	if d.RolloutTimeout <= 0 {
		errs = append(errs, fmt.Errorf("deploy.rolloutTimeout must be positive, got %s", d.RolloutTimeout))
	}
	if d.RunAsUser <= 0 || d.RunAsGroup <= 0 {
		errs = append(errs, errors.New("deploy.runAsUser and deploy.runAsGroup must be non-zero positive ids: functions never run as root"))
	}
	if d.Port < 1 || d.Port > 65535 {
		errs = append(errs, fmt.Errorf("deploy.port must be between 1 and 65535, got %d", d.Port))
	}
	quantities := map[string]string{
		"deploy.tmpSizeLimit":                   d.TmpSizeLimit,
		"deploy.defaultResources.cpuRequest":    d.DefaultResources.CPURequest,
		"deploy.defaultResources.memoryRequest": d.DefaultResources.MemoryRequest,
		"deploy.defaultResources.cpuLimit":      d.DefaultResources.CPULimit,
		"deploy.defaultResources.memoryLimit":   d.DefaultResources.MemoryLimit,
	}
	for _, key := range sortedKeys(quantities) {
		if q := quantities[key]; q != "" {
			if _, err := resource.ParseQuantity(q); err != nil {
				errs = append(errs, fmt.Errorf("%s %q is not a Kubernetes quantity (e.g. 100m, 128Mi)", key, q))
			}
		}
	}
	if err := d.Tenants.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
