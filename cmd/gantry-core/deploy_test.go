package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/internal/testenv"
)

func TestDeployCommand(t *testing.T) {
	env := testenv.Require(t)
	rc, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(rc)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := "gantry-cli-deploy-" + hex.EncodeToString(b)
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	vars := []string{"GANTRY_DEPLOY_KUBECONFIG=" + env.Kubeconfig, "GANTRY_DEPLOY_NAMESPACE=" + ns,
		"GANTRY_DEPLOY_MODE=kubernetes", "GANTRY_DEPLOY_WAIT_FOR_ROLLOUT=false"}

	code, out, stderr := gantry(t, vars, "deploy", "hello", env.BaseImage, "--env", "A=1", "--secret", "hello-db",
		"--run-id", "run-1", "--repo", "acme/fns", "--output", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res deploy.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if res.Mode != deploy.ModeKubernetes || len(res.Objects) != 2 || res.Image != env.BaseImage {
		t.Fatalf("result %+v", res)
	}
	dep, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "hello", metav1.GetOptions{})
	if err != nil || dep.Annotations[deploy.AnnotationRepo] != "acme/fns" {
		t.Fatalf("deployment %v, %v", dep, err)
	}

	tagged := strings.Split(env.BaseImage, "@")[0] + ":latest"
	for _, args := range [][]string{
		{"deploy", "hello", tagged},
		{"deploy", "hello", env.BaseImage, "--env", "NOEQUALS"},
		{"deploy", "hello"},
	} {
		code, _, stderr := gantry(t, vars, args...)
		if code != exitFailure || !strings.HasPrefix(stderr, "gantry: ") {
			t.Errorf("%v: exit %d (%s), want %d with a reason", args, code, stderr, exitFailure)
		}
	}
}
