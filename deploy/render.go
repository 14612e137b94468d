package deploy

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/gantry-dev/gantry/config"
)

const (
	portName      = "http"
	tmpVolume     = "tmp"
	secretsVolume = "secrets"
	// secretFileMode lets the run-as group read secret files, nobody else.
	secretFileMode int32 = 0o440
)

// renderDeployment builds the Deployment. The pod is hardened to pass the
// Pod Security Standards "restricted" profile on its own, not only
// because admission would refuse it otherwise: non-root with fixed
// non-zero ids, no privilege escalation, every capability dropped, the
// runtime's default seccomp profile, a read-only root file system with a
// bounded emptyDir at /tmp, and no service account token (functions do
// not call the Kubernetes API).
func renderDeployment(cfg config.Deploy, n *normalized) *appsv1ac.DeploymentApplyConfiguration {
	labels := n.objectLabels()
	annotations := n.annotations()

	container := corev1ac.Container().
		WithName(n.Name).
		WithImage(n.image).
		WithImagePullPolicy(corev1.PullIfNotPresent).
		WithPorts(corev1ac.ContainerPort().WithName(portName).WithContainerPort(int32(cfg.Port)).WithProtocol(corev1.ProtocolTCP)).
		WithSecurityContext(corev1ac.SecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(cfg.RunAsUser).
			WithRunAsGroup(cfg.RunAsGroup).
			WithAllowPrivilegeEscalation(false).
			WithPrivileged(false).
			WithReadOnlyRootFilesystem(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithVolumeMounts(corev1ac.VolumeMount().WithName(tmpVolume).WithMountPath("/tmp")).
		WithReadinessProbe(corev1ac.Probe().
			WithTCPSocket(corev1ac.TCPSocketAction().WithPort(intstr.FromString(portName))).
			WithPeriodSeconds(5))
	for _, k := range sortedKeys(n.Env) {
		container.WithEnv(corev1ac.EnvVar().WithName(k).WithValue(n.Env[k]))
	}
	if rr := resourceRequirements(n.resources); rr != nil {
		container.WithResources(rr)
	}

	tmp := corev1ac.EmptyDirVolumeSource()
	if cfg.TmpSizeLimit != "" {
		tmp.WithSizeLimit(resource.MustParse(cfg.TmpSizeLimit)) // validated by config.Load
	}
	pod := corev1ac.PodSpec().
		WithAutomountServiceAccountToken(false).
		WithEnableServiceLinks(false).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(cfg.RunAsUser).
			WithRunAsGroup(cfg.RunAsGroup).
			WithFSGroup(cfg.RunAsGroup).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithVolumes(corev1ac.Volume().WithName(tmpVolume).WithEmptyDir(tmp))

	if len(n.SecretRefs) > 0 {
		// One projected volume references every Secret by name: the
		// kubelet reads them at pod start; their data never passes
		// through Gantry or into this manifest.
		projected := corev1ac.ProjectedVolumeSource().WithDefaultMode(secretFileMode)
		for _, s := range n.SecretRefs {
			projected.WithSources(corev1ac.VolumeProjection().WithSecret(
				corev1ac.SecretProjection().WithName(s).WithOptional(false)))
		}
		pod.WithVolumes(corev1ac.Volume().WithName(secretsVolume).WithProjected(projected))
		container.WithVolumeMounts(corev1ac.VolumeMount().WithName(secretsVolume).WithMountPath(SecretsDir).WithReadOnly(true))
	}
	pod.WithContainers(container)

	return appsv1ac.Deployment(n.Name, n.Namespace).
		WithLabels(labels).
		WithAnnotations(annotations).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(n.replicas).
			WithRevisionHistoryLimit(5).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(n.selector())).
			WithStrategy(appsv1ac.DeploymentStrategy().
				WithType("RollingUpdate").
				// Never fewer available pods than asked for during a rollout.
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
					WithMaxUnavailable(intstr.FromInt32(0)).
					WithMaxSurge(intstr.FromInt32(1)))).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(labels).
				WithAnnotations(annotations).
				WithSpec(pod)))
}

func resourceRequirements(r map[string]resource.Quantity) *corev1ac.ResourceRequirementsApplyConfiguration {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	if q, ok := r[resCPURequest]; ok {
		requests[corev1.ResourceCPU] = q
	}
	if q, ok := r[resMemRequest]; ok {
		requests[corev1.ResourceMemory] = q
	}
	if q, ok := r[resCPULimit]; ok {
		limits[corev1.ResourceCPU] = q
	}
	if q, ok := r[resMemLimit]; ok {
		limits[corev1.ResourceMemory] = q
	}
	if len(requests) == 0 && len(limits) == 0 {
		return nil
	}
	rr := corev1ac.ResourceRequirements()
	if len(requests) > 0 {
		rr.WithRequests(requests)
	}
	if len(limits) > 0 {
		rr.WithLimits(limits)
	}
	return rr
}

// renderService exposes the function inside the cluster.
func renderService(cfg config.Deploy, n *normalized) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(n.Name, n.Namespace).
		WithLabels(n.objectLabels()).
		WithAnnotations(n.annotations()).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(n.selector()).
			WithPorts(corev1ac.ServicePort().
				WithName(portName).
				WithProtocol(corev1.ProtocolTCP).
				WithPort(int32(cfg.Port)).
				WithTargetPort(intstr.FromString(portName))))
}

// OpenFaaS Function custom resource coordinates.
const (
	OpenFaaSGroup    = "openfaas.com"
	OpenFaaSVersion  = "v1"
	OpenFaaSResource = "functions"
	OpenFaaSKind     = "Function"
)

// renderOpenFaaSFunction builds a Function in the OpenFaaS operator's
// shape (openfaas.com/v1: spec.name, image, environment, secrets,
// labels, annotations, requests, limits, readOnlyRootFilesystem). The
// operator, not Gantry, then builds the pods; the admission webhook still
// checks them.
func renderOpenFaaSFunction(n *normalized) *unstructured.Unstructured {
	specLabels := map[string]any{}
	for k, v := range n.objectLabels() {
		specLabels[k] = v
	}
	specLabels["com.openfaas.scale.min"] = strconv.Itoa(int(n.replicas))
	if n.Scale.Max > 0 {
		specLabels["com.openfaas.scale.max"] = strconv.Itoa(int(n.Scale.Max))
	}
	specAnnotations := map[string]any{}
	for k, v := range n.annotations() {
		specAnnotations[k] = v
	}
	spec := map[string]any{
		"name":                   n.Name,
		"image":                  n.image,
		"labels":                 specLabels,
		"annotations":            specAnnotations,
		"readOnlyRootFilesystem": true,
	}
	if len(n.Env) > 0 {
		env := map[string]any{}
		for k, v := range n.Env {
			env[k] = v
		}
		spec["environment"] = env
	}
	if len(n.SecretRefs) > 0 {
		secrets := make([]any, 0, len(n.SecretRefs))
		for _, s := range n.SecretRefs {
			secrets = append(secrets, s)
		}
		spec["secrets"] = secrets
	}
	if m := quantities(n.resources, resCPURequest, resMemRequest); m != nil {
		spec["requests"] = m
	}
	if m := quantities(n.resources, resCPULimit, resMemLimit); m != nil {
		spec["limits"] = m
	}

	meta := map[string]any{
		"name":      n.Name,
		"namespace": n.Namespace,
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": OpenFaaSGroup + "/" + OpenFaaSVersion,
		"kind":       OpenFaaSKind,
		"metadata":   meta,
		"spec":       spec,
	}}
	u.SetLabels(n.objectLabels())
	u.SetAnnotations(n.annotations())
	return u
}

func quantities(r map[string]resource.Quantity, cpuKey, memKey string) map[string]any {
	m := map[string]any{}
	if q, ok := r[cpuKey]; ok {
		m["cpu"] = q.String()
	}
	if q, ok := r[memKey]; ok {
		m["memory"] = q.String()
	}
	if len(m) == 0 {
		return nil
	}
	return m
}
