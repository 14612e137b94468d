package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/admission/clusteraudit"
	"github.com/gantry-dev/gantry/internal/testenv"
)

// auditCluster is a namespace of the controllers' cluster (Deployments get
// ReplicaSets and Pods) filled with workloads before any webhook guards it.
type auditCluster struct {
	admin                 *kubernetes.Clientset
	ns, other             string
	dir, config, kubeconf string
	signed, unsigned      string
	ok                    *appsv1.Deployment
}

// restrictedSpec passes every rule when image is signed: restricted Pod
// Security, UID 1000. rootByImage drops runAsUser so that the image's own
// config (no USER: root) decides; privileged sets privileged: true.
func restrictedSpec(image string, rootByImage, privileged bool) corev1.PodSpec {
	s := bgPodSpec(image, privileged)
	if rootByImage {
		s.SecurityContext.RunAsUser = nil
	}
	return s
}

func setupAuditCluster(t *testing.T) *auditCluster {
	env := testenv.RequireControllers(t)
	ctx := context.Background()
	uniq := randHex(t, 4)
	c := &auditCluster{ns: "audit-" + uniq, other: "audit-other-" + uniq, dir: t.TempDir(), kubeconf: env.ControllersKubeconfig}
	rc, err := clientcmd.BuildConfigFromFlags("", env.ControllersKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 30 * time.Second
	rc.WarningHandler = rest.NoWarnings{}
	if c.admin, err = kubernetes.NewForConfig(rc); err != nil {
		t.Fatal(err)
	}

	// A signed image and an unsigned one (random images: no USER, so root
	// unless the pod says otherwise).
	write := fileWriter(t, c.dir)
	keyPath, _ := cosignKeyFiles(t, c.dir)
	policy := write("policy.yaml", []byte("identities:\n  - {name: release, key: cosign.pub}\n"))
	repo := fmt.Sprintf("%s/policy-audit-%s", env.Registry, uniq)
	c.signed = pushRandom(t, repo+"/signed:v1")
	c.unsigned = pushRandom(t, repo+"/unsigned:v1")
	if code, out, stderr := gantry(t, []string{"GANTRY_REGISTRY_INSECURE=" + env.Registry, "COSIGN_PASSWORD=pw"},
		"sign", c.signed, "--key", keyPath); code != exitOK {
		t.Fatalf("sign: exit %d: %s %s", code, out, stderr)
	}
	c.config = write("gantry.yaml", []byte(fmt.Sprintf(`
queue: {dataDir: %q}
registry: {insecure: [%q]}
deploy: {namespace: %q}
admission:
  listen: 127.0.0.1:0
  signerPolicy: %q
  audit: {kubeconfig: %q, interval: 10s}
`, filepath.Join(c.dir, "data"), env.Registry, c.ns, policy, env.ControllersKubeconfig)))

	for _, ns := range []string{c.ns, c.other} {
		if _, err := c.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	}
	// What runs before anyone thought of admission: a signed Deployment
	// that passes, an unsigned one (its ReplicaSet and two Pods made by the
	// controllers), a privileged Pod, a CronJob whose image runs as root,
	// and a privileged Pod that claims the passing Deployment as its
	// controller, to hide under it. The other namespace is not audited.
	ok := bgDeployment("ok", restrictedSpec(c.signed, false, false), "")
	ok.Labels = map[string]string{"app": "ok"}
	c.ok, err = c.admin.AppsV1().Deployments(c.ns).Create(ctx, ok, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unsigned := bgDeployment("unsigned", restrictedSpec(c.unsigned, false, false), "")
	unsigned.Spec.Replicas = ptr.To(int32(2))
	unsigned.Labels = map[string]string{"app": "unsigned"}
	for _, o := range []struct {
		create func() error
	}{
		{func() error {
			_, err := c.admin.AppsV1().Deployments(c.ns).Create(ctx, unsigned, metav1.CreateOptions{})
			return err
		}},
		{func() error {
			_, err := c.admin.CoreV1().Pods(c.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "privileged", Labels: map[string]string{"app": "privileged"}},
				Spec: restrictedSpec(c.signed, false, true)}, metav1.CreateOptions{})
			return err
		}},
		{func() error {
			_, err := c.admin.BatchV1().CronJobs(c.ns).Create(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "root"},
				Spec: batchv1.CronJobSpec{Schedule: "@daily", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
					Template: corev1.PodTemplateSpec{Spec: withRestartNever(restrictedSpec(c.signed, true, false))}}}}}, metav1.CreateOptions{})
			return err
		}},
		{func() error {
			_, err := c.admin.CoreV1().Pods(c.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hidden", Labels: map[string]string{"app": "hidden"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "ok", UID: c.ok.UID, Controller: ptr.To(true)}}},
				Spec: restrictedSpec(c.signed, false, true)}, metav1.CreateOptions{})
			return err
		}},
		{func() error {
			_, err := c.admin.CoreV1().Pods(c.other).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"},
				Spec: restrictedSpec(c.unsigned, false, true)}, metav1.CreateOptions{})
			return err
		}},
	} {
		if err := o.create(); err != nil {
			t.Fatal(err)
		}
	}
	// The controllers make the ReplicaSets and Pods.
	waitFor(t, "pods of the Deployments", func() (bool, string, error) {
		pods, err := c.admin.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{LabelSelector: "app in (ok,unsigned)"})
		if err != nil {
			return false, "", err
		}
		return len(pods.Items) == 3, fmt.Sprintf("%d pods", len(pods.Items)), nil
	})
	return c
}

func withRestartNever(s corev1.PodSpec) corev1.PodSpec {
	s.RestartPolicy = corev1.RestartPolicyNever
	return s
}

// TestPolicyAuditExistingWorkloads: workloads created before the webhook
// was registered are listed by `gantry policy audit` (a process) with the
// webhook's reasons and fixes; then the real webhook, registered, refuses
// each of them with those same reasons and admits the one the audit passed;
// and `gantry admission` publishes the same verdict as gauges, dropping a
// workload once it is gone.
func TestPolicyAuditExistingWorkloads(t *testing.T) {
	t.Parallel()
	c := setupAuditCluster(t)
	ctx := context.Background()
	sig := "not signed by a trusted identity: "
	ps := func(reason string) string { return `"restricted:latest" (spec): ` + reason }
	privileged := `privileged (container "app" must not set securityContext.privileged=true)`
	escalation := `allowPrivilegeEscalation != false (container "app" must set securityContext.allowPrivilegeEscalation=false)`
	rootMsg := `runs as root: the pod sets no runAsUser and the image config has USER ""`

	t.Run("table", func(t *testing.T) {
		code, out, stderr := runGantryProcess(t, nil, "policy", "audit", "--config", c.config)
		if code != exitPolicy {
			t.Fatalf("exit %d, want 1\n%s\n%s", code, out, stderr)
		}
		rows := tableRows(t, out)
		want := [][]string{
			{c.ns, "enforce", "CronJob/root", "nonRoot", `container "app" image "` + c.signed + `" — ` + rootMsg, nonRootFixText},
			{c.ns, "enforce", "Deployment/unsigned (+3 owned)", "signature", `image "` + c.unsigned + `" — ` + sig, "sign the digest with a key or identity the verify policy trusts (gantry sign)"},
			{c.ns, "enforce", "Pod/hidden", "podSecurity", ps(privileged), "-"},
			{c.ns, "enforce", "Pod/hidden", "podSecurity", ps(escalation), "-"},
			{c.ns, "enforce", "Pod/privileged", "podSecurity", ps(privileged), "-"},
			{c.ns, "enforce", "Pod/privileged", "podSecurity", ps(escalation), "-"},
		}
		if len(rows) != len(want) {
			t.Fatalf("%d rows, want %d:\n%s", len(rows), len(want), out)
		}
		for i, w := range want {
			got := rows[i]
			for j := range w {
				// The signature reason names the digest looked up; its start
				// and the fix are fixed.
				if j < len(got) && (got[j] == w[j] || (j == 4 && w[3] == "signature" && strings.HasPrefix(got[j], w[j]))) {
					continue
				}
				t.Errorf("row %d column %d: %q, want %q\n%s", i, j, safeCol(got, j), w[j], out)
			}
		}
		if !strings.HasSuffix(out, "10 scanned in "+c.ns+", 4 would be denied\n") {
			t.Errorf("summary: %s", out)
		}
	})

	var rep clusteraudit.Report
	t.Run("json", func(t *testing.T) {
		code, out, stderr := runGantryProcess(t, nil, "policy", "audit", "--config", c.config, "--output", "json")
		if code != exitPolicy {
			t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
		}
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rep); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if rep.Schema != "gantry.dev/policy-audit/v1" || rep.Scanned != 10 || rep.Denied != 4 || len(rep.Workloads) != 4 ||
			strings.Join(rep.Namespaces, ",") != c.ns || time.Since(rep.GeneratedAt) > 5*time.Minute {
			t.Fatalf("report header: %s", out)
		}
		var got []string
		for _, w := range rep.Workloads {
			var rules []string
			for _, v := range w.Violations {
				rules = append(rules, v.Rule+"/"+v.Container+"/"+v.Image)
			}
			got = append(got, fmt.Sprintf("%s %s denied=%v covers=%d mode=%s level=%s %s", w.Kind, w.Name, w.Denied, len(w.Covers), w.Mode, w.Level, strings.Join(rules, ",")))
		}
		want := []string{
			"CronJob root denied=true covers=0 mode=enforce level=restricted:latest nonRoot/app/" + c.signed,
			"Deployment unsigned denied=true covers=3 mode=enforce level=restricted:latest signature//" + c.unsigned,
			"Pod hidden denied=true covers=0 mode=enforce level=restricted:latest podSecurity//,podSecurity//",
			"Pod privileged denied=true covers=0 mode=enforce level=restricted:latest podSecurity//,podSecurity//",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("workloads:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// The documented keys, no more, no fewer (docs/admission.md).
		var raw struct {
			Top       map[string]json.RawMessage
			Workloads []map[string]json.RawMessage `json:"workloads"`
		}
		if err := json.Unmarshal([]byte(out), &raw.Top); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(out), &raw); err != nil {
			t.Fatal(err)
		}
		var vios []map[string]json.RawMessage
		if err := json.Unmarshal(raw.Workloads[1]["violations"], &vios); err != nil {
			t.Fatal(err)
		}
		for _, k := range []struct {
			what string
			m    map[string]json.RawMessage
			want string
		}{
			{"report", raw.Top, "denied,generatedAt,namespaces,scanned,schema,workloads"},
			{"workload", raw.Workloads[1], "covers,denied,kind,level,mode,name,namespace,violations"},
			{"violation", vios[0], "fix,image,message,rule"},
		} {
			var keys []string
			for key := range k.m {
				keys = append(keys, key)
			}
			slices.Sort(keys)
			if strings.Join(keys, ",") != k.want {
				t.Errorf("%s keys %v, want %s", k.what, keys, k.want)
			}
		}
		covers := strings.Join(rep.Workloads[1].Covers, ",")
		if !regexp.MustCompile(`^Pod unsigned-[a-z0-9]+-[a-z0-9]+,Pod unsigned-[a-z0-9]+-[a-z0-9]+,ReplicaSet unsigned-[a-z0-9]+$`).MatchString(covers) {
			t.Errorf("covers: %s", covers)
		}
	})

	t.Run("selector", func(t *testing.T) {
		code, out, stderr := runGantryProcess(t, nil, "policy", "audit", "--config", c.config, "-l", "app=ok")
		if code != exitOK || out != fmt.Sprintf("3 scanned in %s, 0 would be denied\n", c.ns) {
			t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
		}
	})

	t.Run("missing RBAC verb", func(t *testing.T) {
		// auditor may list everything but ReplicationControllers.
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "auditor"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets", "statefulsets", "daemonsets"}, Verbs: []string{"list"}},
			{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: []string{"list"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
		}}
		if _, err := c.admin.RbacV1().Roles(c.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.admin.RbacV1().RoleBindings(c.ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "auditor"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "auditor"},
			Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "auditor"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		kc, err := clientcmd.LoadFromFile(c.kubeconf)
		if err != nil {
			t.Fatal(err)
		}
		for _, ai := range kc.AuthInfos {
			ai.Impersonate = "auditor"
		}
		path := filepath.Join(c.dir, "auditor.kubeconfig")
		if err := clientcmd.WriteToFile(*kc, path); err != nil {
			t.Fatal(err)
		}
		code, out, stderr := runGantryProcess(t, nil, "policy", "audit", "--config", c.config, "--kubeconfig", path)
		want := `grant the RBAC verb "list" on resource "replicationcontrollers" (apiGroup "" (core)) in namespace ` + c.ns
		if code != exitFailure || out != "" || !strings.Contains(stderr, want) {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s\nwant %s", code, out, stderr, want)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("periodic audit without RBAC", func(t *testing.T) {
		// The server starts, says why the audit fails, and publishes no
		// verdict (last success 0) rather than an empty one.
		cfg := strings.Replace(readFile(t, c.config), c.kubeconf, filepath.Join(c.dir, "auditor.kubeconfig"), 1)
		cfgFile := fileWriter(t, t.TempDir())("gantry.yaml", []byte(cfg))
		dir := t.TempDir()
		logFile := filepath.Join(dir, "admission.log")
		p := startGantryUntil(t, admissionListeningRE, logFile, "admission", "--config", cfgFile, "--tls-self-signed", filepath.Join(dir, "tls"))
		waitFor(t, "the failed audit pass", func() (bool, string, error) {
			return strings.Contains(readFile(t, logFile), "admission audit failed"), "", nil
		})
		if log := readFile(t, logFile); !strings.Contains(log, `grant the RBAC verb \"list\" on resource \"replicationcontrollers\"`) {
			t.Fatalf("log:\n%s", log)
		}
		client := tlsClient(t, filepath.Join(dir, "tls", "ca.crt"))
		_, port, _ := strings.Cut(p.addr, ":")
		resp, err := client.Get("https://localhost:" + port + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		m := string(b)
		if metricValue(t, m, "gantry_admission_audit_last_success_timestamp_seconds") != 0 || metricValue(t, m, "gantry_admission_audit_last_run_timestamp_seconds") == 0 ||
			strings.Contains(m, "gantry_admission_audit_violations{") {
			t.Fatalf("metrics after a failed pass:\n%s", m)
		}
		p.kill()
	})

	// The real webhook, registered now, refuses each reported workload
	// with the reported reasons (a dry-run create of a copy), and admits
	// the one the audit passed.
	logFile := filepath.Join(c.dir, "admission.log")
	tlsDir := filepath.Join(c.dir, "tls")
	p := startGantryUntil(t, admissionListeningRE, logFile, "admission", "--config", c.config, "--tls-self-signed", tlsDir)
	registerWebhook(t, ctx, c.admin, c.ns, p.addr, tlsDir, randHex(t, 4))
	t.Run("webhook agrees", func(t *testing.T) {
		for _, w := range rep.Workloads {
			err := dryRunCopy(ctx, c.admin, w.Kind, c.ns, w.Name)
			if err == nil {
				t.Errorf("%s: admitted, the audit said denied", w.Object())
				continue
			}
			for _, v := range w.Violations {
				if !strings.Contains(err.Error(), v.String()) {
					t.Errorf("%s: the webhook's denial lacks %q:\n%v", w.Object(), v.String(), err)
				}
			}
		}
		if err := dryRunCopy(ctx, c.admin, "Deployment", c.ns, "ok"); err != nil {
			t.Errorf("Deployment ok refused, the audit passed it: %v", err)
		}
	})

	t.Run("gauges", func(t *testing.T) {
		client := tlsClient(t, filepath.Join(tlsDir, "ca.crt"))
		_, port, _ := strings.Cut(p.addr, ":")
		scrape := func() string {
			resp, err := client.Get("https://localhost:" + port + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		gauges := func(m string) string {
			var out []string
			for _, l := range strings.Split(m, "\n") {
				if strings.HasPrefix(l, "gantry_admission_audit_violations{") || strings.HasPrefix(l, "gantry_admission_audit_denied_workloads ") {
					out = append(out, l)
				}
			}
			return strings.Join(out, "\n")
		}
		want := strings.Join([]string{
			"gantry_admission_audit_violations{namespace=\"" + c.ns + "\",rule=\"nonRoot\"} 1",
			"gantry_admission_audit_violations{namespace=\"" + c.ns + "\",rule=\"podSecurity\"} 2",
			"gantry_admission_audit_violations{namespace=\"" + c.ns + "\",rule=\"signature\"} 1",
			"gantry_admission_audit_denied_workloads 4",
		}, "\n")
		waitFor(t, "audit gauges", func() (bool, string, error) {
			m := gauges(scrape())
			return sortLines(m) == sortLines(want), m, nil
		})
		first := scrape()
		lastSuccess := metricValue(t, first, "gantry_admission_audit_last_success_timestamp_seconds")
		if lastSuccess < float64(time.Now().Add(-time.Minute).Unix()) || metricValue(t, first, "gantry_admission_audit_last_run_timestamp_seconds") < lastSuccess {
			t.Fatalf("timestamps:\n%s", first)
		}
		// Fixed things disappear at the next pass.
		if err := c.admin.BatchV1().CronJobs(c.ns).Delete(ctx, "root", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		want = strings.Join([]string{
			"gantry_admission_audit_violations{namespace=\"" + c.ns + "\",rule=\"podSecurity\"} 2",
			"gantry_admission_audit_violations{namespace=\"" + c.ns + "\",rule=\"signature\"} 1",
			"gantry_admission_audit_denied_workloads 3",
		}, "\n")
		waitFor(t, "gauges after the CronJob is gone", func() (bool, string, error) {
			m := gauges(scrape())
			return sortLines(m) == sortLines(want), m, nil
		})
		// The audit's passes are not admission reviews: they leave the
		// review counters alone.
		counters := func(m string) string {
			var out []string
			for _, l := range strings.Split(m, "\n") {
				if strings.HasPrefix(l, "gantry_admission_violations_total{") || strings.HasPrefix(l, "gantry_admission_requests_total{") {
					out = append(out, l)
				}
			}
			return strings.Join(out, "\n")
		}
		if before, after := counters(first), counters(scrape()); before != after || !strings.Contains(before, `rule="podSecurity"`) {
			t.Errorf("admission counters moved between audit passes:\n%s\nthen\n%s", before, after)
		}
	})
}

const nonRootFixText = "set securityContext.runAsUser to a non-zero UID (and runAsNonRoot: true), or build the image with a numeric non-root USER (e.g. USER 1000)"

func sortLines(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(l)
	return strings.Join(l, "\n")
}

// tableRows splits the table's rows (header and summary line dropped) into
// columns separated by two or more spaces.
func tableRows(t *testing.T, out string) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "NAMESPACE") {
		t.Fatalf("no table:\n%s", out)
	}
	sep := regexp.MustCompile(`\s{2,}`)
	var rows [][]string
	for _, l := range lines[1 : len(lines)-1] {
		rows = append(rows, sep.Split(strings.TrimSpace(l), -1))
	}
	return rows
}

func safeCol(r []string, j int) string {
	if j < len(r) {
		return r[j]
	}
	return "<missing>"
}

// dryRunCopy creates a copy of a stored object (dry run) through the API
// server, which calls the webhooks registered for its namespace.
func dryRunCopy(ctx context.Context, cs *kubernetes.Clientset, kind, ns, name string) error {
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	fresh := func(m *metav1.ObjectMeta) {
		*m = metav1.ObjectMeta{Name: m.Name + "-copy", Namespace: m.Namespace, Labels: m.Labels, Annotations: m.Annotations}
	}
	switch kind {
	case "Pod":
		o, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		fresh(&o.ObjectMeta)
		o.Status = corev1.PodStatus{}
		o.Spec.NodeName = ""
		_, err = cs.CoreV1().Pods(ns).Create(ctx, o, dry)
		return err
	case "Deployment":
		o, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		fresh(&o.ObjectMeta)
		o.Status = appsv1.DeploymentStatus{}
		_, err = cs.AppsV1().Deployments(ns).Create(ctx, o, dry)
		return err
	case "CronJob":
		o, err := cs.BatchV1().CronJobs(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		fresh(&o.ObjectMeta)
		o.Status = batchv1.CronJobStatus{}
		_, err = cs.BatchV1().CronJobs(ns).Create(ctx, o, dry)
		return err
	}
	return fmt.Errorf("dryRunCopy: kind %s", kind)
}

// metricValue reads the value of an unlabelled metric from a scrape.
func metricValue(t *testing.T, scrape, name string) float64 {
	t.Helper()
	for _, l := range strings.Split(scrape, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in\n%s", name, scrape)
	return 0
}

func TestPolicyAuditUsage(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "audit", "-o", "yaml"}, `--output "yaml": allowed: table, json`},
		{[]string{"policy", "audit", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"policy", "audit", "--kubeconfig", filepath.Join(dir, "missing")}, "missing"},
		{[]string{"policy", "audit", "-n", "x", "extra"}, "unknown command"},
	} {
		code, out, stderr := gantry(t, []string{"KUBECONFIG=" + filepath.Join(dir, "none")}, c.args...)
		if code != exitFailure || out != "" || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q, want %q", c.args, code, out, stderr, c.want)
		}
	}
}
