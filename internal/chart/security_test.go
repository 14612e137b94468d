package chart

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/admission/objects"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/testenv"
)

func TestPipelineManifestsMatchChart(t *testing.T) {
	r := root(t)
	want, err := RenderPipelineManifests(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(r, PipelineManifests))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date with charts/gantry: run `go run ./hack/render-manifests`", PipelineManifests)
	}
}

func renderAll(t *testing.T, rel Release, fnNamespaces ...string) []map[string]any {
	t.Helper()
	ns := make([]any, len(fnNamespaces))
	for i, n := range fnNamespaces {
		ns[i] = n
	}
	out, err := Render(filepath.Join(root(t), ChartDir), rel, map[string]any{"admission": map[string]any{
		"functionNamespaces": ns,
		// No cert-manager in tests: existing Secrets and their CA.
		"tls": map[string]any{"mode": "secret", "existingSecret": "gantry-admission-tls", "caBundle": "Y2E="},
	}, "nats": map[string]any{"tls": map[string]any{"mode": "secret", "secrets": map[string]any{
		"server": "gantry-nats-server", "receiver": "gantry-nats-receiver", "worker": "gantry-nats-worker", "admin": "gantry-nats-admin",
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := Documents(out)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

func str(m any, path ...any) string { s, _ := get(m, path...).(string); return s }

// TestDeployerRBACMatchesChart checks that manifests/deployer-rbac.yaml is
// what the chart renders for its default function namespace, release
// gantry in gantry-system (the names of manifests/gantry-pipeline.yaml):
// same Role name, namespace and rules, same binding to the worker's
// ServiceAccount. Labels may differ.
func TestDeployerRBACMatchesChart(t *testing.T) {
	docs := renderAll(t, Release{Name: "gantry", Namespace: "gantry-system"}, "openfaas-fn")
	rbacFile, err := os.ReadFile(filepath.Join(root(t), "manifests/deployer-rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := Documents(rbacFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"Role", "RoleBinding"} {
		want, got := byKind(t, docs, kind), byKind(t, ref, kind)
		if len(want) != 1 || len(got) != 1 {
			t.Fatalf("%s: chart renders %d, manifest holds %d; want one each", kind, len(want), len(got))
		}
		for _, path := range [][]any{
			{"metadata", "name"}, {"metadata", "namespace"}, {"rules"}, {"roleRef"}, {"subjects"},
		} {
			if w, g := get(want[0], path...), get(got[0], path...); !reflect.DeepEqual(w, g) {
				t.Errorf("%s %v: manifests/deployer-rbac.yaml has %v, the chart renders %v", kind, path, g, w)
			}
		}
	}
	if len(ref) != 2 {
		t.Errorf("manifests/deployer-rbac.yaml holds %d objects, want the Role and the RoleBinding only", len(ref))
	}
}

// TestLeastPrivilege checks the whole chart: who may talk to the API
// server and with which grants, how every pod runs, how secrets reach it,
// and which traffic the NetworkPolicies allow.
func TestLeastPrivilege(t *testing.T) {
	docs := renderAll(t, Release{Name: "gantry", Namespace: "gantry-system"}, "fn-a", "fn-b")

	for _, k := range []string{"ClusterRole", "ClusterRoleBinding"} {
		if n := len(byKind(t, docs, k)); n != 0 {
			t.Fatalf("the chart grants %d %s: nothing cluster-wide is needed", n, k)
		}
	}
	for _, sa := range byKind(t, docs, "ServiceAccount") {
		if get(sa, "automountServiceAccountToken") != false {
			t.Errorf("ServiceAccount %s mounts its token by default", str(sa, "metadata", "name"))
		}
	}
	// Roles: only the deployer, only in the function namespaces, exactly
	// the grants of manifests/deployer-rbac.yaml, bound to the worker only.
	rbacFile, err := os.ReadFile(filepath.Join(root(t), "manifests/deployer-rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := Documents(rbacFile)
	if err != nil {
		t.Fatal(err)
	}
	wantRules := get(byKind(t, ref, "Role")[0], "rules")
	roles := byKind(t, docs, "Role")
	var roleNS []string
	for _, r := range roles {
		roleNS = append(roleNS, str(r, "metadata", "namespace"))
		if !reflect.DeepEqual(get(r, "rules"), wantRules) {
			t.Errorf("Role %s/%s rules differ from manifests/deployer-rbac.yaml:\n%v", roleNS[len(roleNS)-1], str(r, "metadata", "name"), get(r, "rules"))
		}
	}
	if slices.Sort(roleNS); !slices.Equal(roleNS, []string{"fn-a", "fn-b"}) {
		t.Fatalf("Roles in %v, want one in each function namespace only", roleNS)
	}
	for _, b := range byKind(t, docs, "RoleBinding") {
		subj, _ := get(b, "subjects").([]any)
		if len(subj) != 1 || str(subj[0], "name") != "gantry-worker" || str(subj[0], "namespace") != "gantry-system" {
			t.Errorf("RoleBinding %s binds %v, want the worker ServiceAccount only", str(b, "metadata", "name"), subj)
		}
	}

	deps := byKind(t, docs, "Deployment")
	if len(deps) != 3 {
		t.Fatalf("%d Deployments, want admission, receiver, worker", len(deps))
	}
	policies := byKind(t, docs, "NetworkPolicy")
	for _, d := range deps {
		name := str(d, "metadata", "name")
		pod := get(d, "spec", "template", "spec")
		wantToken := name == "gantry-worker"
		if tok := get(pod, "automountServiceAccountToken"); tok != wantToken {
			t.Errorf("%s: automountServiceAccountToken %v, want %v (only the worker talks to the API server)", name, tok, wantToken)
		}
		if get(pod, "securityContext", "runAsNonRoot") != true || get(pod, "securityContext", "runAsUser") == float64(0) ||
			get(pod, "securityContext", "runAsUser") == nil || str(pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
			t.Errorf("%s: pod securityContext %v", name, get(pod, "securityContext"))
		}
		if get(pod, "hostNetwork") == true || get(pod, "hostPID") == true || get(pod, "hostIPC") == true {
			t.Errorf("%s shares a host namespace", name)
		}
		for _, c := range get(pod, "containers").([]any) {
			sc := get(c, "securityContext")
			caps, _ := get(sc, "capabilities", "drop").([]any)
			if get(sc, "readOnlyRootFilesystem") != true || get(sc, "allowPrivilegeEscalation") != false ||
				!slices.Contains(caps, any("ALL")) || get(sc, "privileged") == true {
				t.Errorf("%s/%s: container securityContext %v", name, str(c, "name"), sc)
			}
			if get(c, "resources", "requests", "cpu") == nil || get(c, "resources", "requests", "memory") == nil || get(c, "resources", "limits", "memory") == nil {
				t.Errorf("%s/%s: resources %v", name, str(c, "name"), get(c, "resources"))
			}
			// Secrets reach the process as files only: environment
			// variables hold literal settings or pod fields, never a
			// Secret's or ConfigMap's keys.
			if get(c, "envFrom") != nil {
				t.Errorf("%s/%s has envFrom: secrets must be files", name, str(c, "name"))
			}
			env, _ := get(c, "env").([]any)
			for _, e := range env {
				if get(e, "valueFrom", "secretKeyRef") != nil || get(e, "valueFrom", "configMapKeyRef") != nil {
					t.Errorf("%s/%s: environment variable %s from a Secret or ConfigMap: secrets must be files", name, str(c, "name"), str(e, "name"))
				}
			}
			args := fmt.Sprint(get(c, "args"))
			for _, bad := range []string{"secret", "token", "password", "key"} {
				if strings.Contains(strings.ToLower(args), bad) {
					t.Errorf("%s/%s args %s mention %q: secrets must be files named in the config", name, str(c, "name"), args, bad)
				}
			}
		}
		// Every pod is selected by a policy with both types (deny by default).
		labels := get(d, "spec", "template", "metadata", "labels").(map[string]any)
		selected := false
		for _, p := range policies {
			if str(p, "metadata", "namespace") != "gantry-system" {
				continue
			}
			ml, _ := get(p, "spec", "podSelector", "matchLabels").(map[string]any)
			match := len(ml) > 0
			for k, v := range ml {
				match = match && labels[k] == v
			}
			types := fmt.Sprint(get(p, "spec", "policyTypes"))
			if match && strings.Contains(types, "Ingress") && strings.Contains(types, "Egress") {
				selected = true
			}
		}
		if !selected {
			t.Errorf("%s: no NetworkPolicy with Ingress and Egress selects its pods", name)
		}
	}

	netpol := func(ns, name string) map[string]any {
		for _, p := range policies {
			if str(p, "metadata", "namespace") == ns && str(p, "metadata", "name") == name {
				return p
			}
		}
		t.Fatalf("no NetworkPolicy %s/%s", ns, name)
		return nil
	}
	for _, ns := range []string{"fn-a", "fn-b"} {
		p := netpol(ns, "gantry-functions")
		if sel, _ := get(p, "spec", "podSelector").(map[string]any); len(sel) != 0 {
			t.Errorf("%s: the function policy must select every pod, got %v", ns, sel)
		}
		from, _ := yaml.Marshal(get(p, "spec", "ingress"))
		if !strings.Contains(string(from), "openfaas") || strings.Count(string(from), "namespaceSelector") != 1 {
			t.Errorf("%s: ingress %s, want only the gateway namespace", ns, from)
		}
		if except := fmt.Sprint(get(p, "spec", "egress", 0, "to", 0, "ipBlock", "except")); !strings.Contains(except, "10.96.0.1/32") {
			t.Errorf("%s: egress does not exclude the API server: %s", ns, except)
		}
	}
	recv, _ := yaml.Marshal(get(netpol("gantry-system", "gantry-receiver"), "spec", "egress"))
	if strings.Contains(string(recv), "6443") || strings.Contains(string(recv), "ipBlock") || strings.Contains(string(recv), "1234") {
		t.Errorf("the receiver may reach more than NATS and DNS:\n%s", recv)
	}
	if get(netpol("gantry-system", "gantry-worker"), "spec", "ingress") != nil {
		t.Error("the worker accepts connections")
	}

	// The pipeline configuration loads, is a receiver only, and serves TLS.
	cfg := renderedConfig(t, docs, "gantry-pipeline")
	if cfg.Server.RunWorkers || cfg.Server.InsecureHTTP || cfg.Server.TLS.CertFile == "" || len(cfg.Webhooks.GitHubSecretFiles) != 1 {
		t.Fatalf("pipeline config: %+v", cfg.Server)
	}

	// Every Gantry pod passes Gantry's own policy (restricted, non-root).
	acfg := config.Default()
	acfg.Admission.VerifySignatures = false
	eval, err := admission.New(acfg.Admission, admission.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deps {
		b, _ := yaml.Marshal(d)
		mdocs, err := objects.DecodeManifest(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		dec := eval.Evaluate(context.Background(), admission.Request{Operation: "CREATE", Namespace: "gantry-system", Workload: mdocs[0].Workload})
		if !dec.Allowed {
			t.Errorf("%s fails Gantry's own policy:\n%s", str(d, "metadata", "name"), dec.Message())
		}
	}
}

func TestPipelineRefusesMissingSecrets(t *testing.T) {
	r := root(t)
	for name, vals := range map[string]map[string]any{
		"no TLS secret":                     {"pipeline": map[string]any{"secrets": map[string]any{"tls": ""}}},
		"no webhook secret":                 {"pipeline": map[string]any{"secrets": map[string]any{"webhook": ""}}},
		"old NATS URL":                      {"pipeline": map[string]any{"natsURL": "nats://nats:4222"}},
		"external NATS without credentials": {"nats": map[string]any{"external": map[string]any{"url": "tls://nats:4222"}}},
		"no seal key":                       {"pipeline": map[string]any{"secrets": map[string]any{"sealKey": ""}}},
	} {
		if _, err := Render(filepath.Join(r, ChartDir), Release{Name: "gantry", Namespace: "gantry-system"}, vals); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
}

// TestChartServerSideDryRun sends every object the chart renders to the
// test environment's kube-apiserver as a server-side dry-run create: the
// API server's own validation (schemas, RBAC escalation checks, policy
// CIDRs) accepts all of them.
func TestChartServerSideDryRun(t *testing.T) {
	t.Parallel()
	env := testenv.Require(t)
	rc, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 30 * time.Second
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e9)
	gantryNS, fnNS := "gantry-dry-"+suffix, "fn-dry-"+suffix
	for _, ns := range []string{gantryNS, fnNS} {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kc.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	}
	docs := renderAll(t, Release{Name: "gantry", Namespace: gantryNS}, fnNS)
	kinds := map[string]int{}
	for _, d := range docs {
		u := &unstructured.Unstructured{Object: d}
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk, u.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		if _, err := ri.Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}); err != nil {
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			t.Errorf("dry-run create %s %s/%s: %v", gvk.Kind, u.GetNamespace(), u.GetName(), err)
			continue
		}
		kinds[gvk.Kind]++
	}
	t.Logf("validated by the API server: %v", kinds)
	for _, k := range []string{"Deployment", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy", "ConfigMap", "Service", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} {
		if kinds[k] == 0 {
			t.Errorf("no %s was validated (rendered kinds: %v)", k, kinds)
		}
	}
}

// TestWorkerListener checks the worker's probe and metrics listener: on
// with its own certificate by default (probes, port, worker.listen in the
// config), reachable by scrapers only from pipeline.worker.metricsNamespaces,
// and entirely absent without pipeline.secrets.workerTLS.
func TestWorkerListener(t *testing.T) {
	for _, tc := range []struct {
		name      string
		secrets   map[string]any
		scrapers  []any
		listen    bool
		ingressNS string
	}{
		{name: "default", listen: true},
		{name: "scraped from monitoring", scrapers: []any{"monitoring"}, listen: true, ingressNS: "monitoring"},
		{name: "no worker certificate", secrets: map[string]any{"workerTLS": ""}, scrapers: []any{"monitoring"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pipeline := map[string]any{"worker": map[string]any{"metricsNamespaces": tc.scrapers}}
			if tc.secrets != nil {
				pipeline["secrets"] = tc.secrets
			}
			out, err := Render(filepath.Join(root(t), ChartDir), Release{Name: "gantry", Namespace: "gantry-system"}, map[string]any{
				"pipeline":  pipeline,
				"admission": map[string]any{"tls": map[string]any{"mode": "secret", "existingSecret": "gantry-admission-tls", "caBundle": "Y2E="}},
			})
			if err != nil {
				t.Fatal(err)
			}
			docs, err := Documents(out)
			if err != nil {
				t.Fatal(err)
			}
			pods := map[string]any{}
			for _, d := range byKind(t, docs, "Deployment") {
				pods[str(d, "metadata", "name")] = get(d, "spec", "template", "spec")
			}
			worker := get(pods["gantry-worker"], "containers", 0)
			probes := map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"}
			for probe, path := range probes {
				p := get(worker, probe)
				if !tc.listen {
					if p != nil {
						t.Errorf("%s without a listener: %v", probe, p)
					}
					continue
				}
				if str(p, "httpGet", "path") != path || str(p, "httpGet", "scheme") != "HTTPS" || str(p, "httpGet", "port") != "https" {
					t.Errorf("%s: %v, want HTTPS GET %s on the https port", probe, p, path)
				}
			}
			ports, _ := get(worker, "ports").([]any)
			if tc.listen != (len(ports) == 1 && str(ports[0], "name") == "https" && get(ports[0], "containerPort") == float64(8443)) {
				t.Errorf("worker ports %v (listener %v)", ports, tc.listen)
			}
			// Each role serves with its own certificate at the same path.
			tlsSecret := func(pod any) string {
				for _, v := range get(pod, "volumes").([]any) {
					if str(v, "name") == "tls" {
						return str(v, "secret", "secretName")
					}
				}
				return ""
			}
			wantWorkerTLS := map[bool]string{true: "gantry-worker-tls"}[tc.listen]
			if got := tlsSecret(pods["gantry-worker"]); got != wantWorkerTLS {
				t.Errorf("worker tls volume from %q, want %q", got, wantWorkerTLS)
			}
			if got := tlsSecret(pods["gantry-receiver"]); got != "gantry-receiver-tls" {
				t.Errorf("receiver tls volume from %q", got)
			}

			cfg := renderedConfig(t, docs, "gantry-pipeline")
			if want := map[bool]string{true: ":8443"}[tc.listen]; cfg.Worker.Listen != want {
				t.Errorf("worker.listen %q, want %q", cfg.Worker.Listen, want)
			}
			if cfg.Server.InsecureHTTP || cfg.Server.TLS.CertFile != "/etc/gantry/tls/tls.crt" {
				t.Errorf("the worker would not serve TLS from its mounted certificate: %+v", cfg.Server)
			}

			var policy map[string]any
			for _, np := range byKind(t, docs, "NetworkPolicy") {
				if str(np, "metadata", "name") == "gantry-worker" {
					policy = np
				}
			}
			ingress := get(policy, "spec", "ingress")
			if tc.ingressNS == "" {
				if ingress != nil {
					t.Errorf("the worker accepts connections: %v", ingress)
				}
				return
			}
			rules, _ := ingress.([]any)
			if len(rules) != 1 || fmt.Sprint(get(rules[0], "ports")) != "[map[port:8443 protocol:TCP]]" ||
				fmt.Sprint(get(rules[0], "from", 0, "namespaceSelector", "matchExpressions", 0, "values")) != "["+tc.ingressNS+"]" ||
				len(get(rules[0], "from").([]any)) != 1 {
				t.Errorf("worker ingress %v, want 8443 from namespace %s only", ingress, tc.ingressNS)
			}
		})
	}
}

// TestSealKeyMounts: the receiver gets the seal's private key only, the
// workers its public key only, at the paths the shared config names.
func TestSealKeyMounts(t *testing.T) {
	docs := renderAll(t, Release{Name: "gantry", Namespace: "gantry-system"}, "fn-a")
	want := map[string]string{"gantry-receiver": "seal.key", "gantry-worker": "seal.pub"}
	for _, d := range byKind(t, docs, "Deployment") {
		name := str(d, "metadata", "name")
		item, ok := want[name]
		if !ok {
			continue
		}
		delete(want, name)
		var items []string
		for _, v := range get(d, "spec", "template", "spec", "volumes").([]any) {
			if str(v, "name") == "seal" {
				for _, it := range get(v, "secret", "items").([]any) {
					items = append(items, str(it, "key")+"->"+str(it, "path"))
				}
			}
		}
		if len(items) != 1 || items[0] != item+"->"+item {
			t.Errorf("%s mounts seal items %v, want only %s", name, items, item)
		}
	}
	if len(want) != 0 {
		t.Errorf("deployments not rendered: %v", want)
	}
	for _, cm := range byKind(t, docs, "ConfigMap") {
		if str(cm, "metadata", "name") != "gantry-pipeline" {
			continue
		}
		cfg := str(cm, "data", "gantry.yaml")
		for _, s := range []string{"sealKeyFile: /etc/gantry/seal/seal.key", "/etc/gantry/seal/seal.pub"} {
			if !strings.Contains(cfg, s) {
				t.Errorf("pipeline config lacks %q:\n%s", s, cfg)
			}
		}
	}
}
