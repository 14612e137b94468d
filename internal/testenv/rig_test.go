package testenv_test

// These tests prove that the test environment is made of real daemons: a
// build goes through buildkitd into the registry and is read back by digest,
// and objects go through kube-apiserver into etcd and are read back.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	bkclient "github.com/moby/buildkit/client"
	"github.com/tonistiigi/fsutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/gantry-dev/gantry/internal/testenv"
)

func TestBuildKitBuildsPushesAndRegistryServesByDigest(t *testing.T) {
	env := testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	dir := t.TempDir()
	marker := fmt.Sprintf("built at %d", time.Now().UnixNano())
	dockerfile := fmt.Sprintf("FROM %s\nRUN echo %q > /marker\nUSER 1000\n", env.BaseImage, marker)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	fs, err := fsutil.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := bkclient.New(ctx, env.BuildkitAddr)
	if err != nil {
		t.Fatalf("connecting to buildkitd at %s: %v", env.BuildkitAddr, err)
	}
	defer c.Close()

	repo := env.Registry + "/itest/two-line"
	status := make(chan *bkclient.SolveStatus)
	go func() {
		for range status { // progress is not under test here
		}
	}()
	resp, err := c.Solve(ctx, nil, bkclient.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: map[string]string{"filename": "Dockerfile"},
		LocalMounts:   map[string]fsutil.FS{"context": fs, "dockerfile": fs},
		Exports: []bkclient.ExportEntry{{
			Type:  bkclient.ExporterImage,
			Attrs: map[string]string{"name": repo + ":latest", "push": "true"},
		}},
	}, status)
	if err != nil {
		t.Fatalf("solve: %v", err)
	}
	digest := resp.ExporterResponse["containerimage.digest"]
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("no image digest in exporter response: %v", resp.ExporterResponse)
	}

	ref, err := name.NewDigest(repo+"@"+digest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("reading %s back from the registry: %v", ref, err)
	}
	got, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != digest {
		t.Fatalf("registry served digest %s, BuildKit reported %s", got, digest)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "1000" {
		t.Fatalf("image config user = %q, want 1000 (from the Dockerfile)", cfg.Config.User)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) < 2 {
		t.Fatalf("want the base layers plus the RUN layer, got %d (%v)", len(layers), err)
	}
}

func TestKubeAPIServerStoresNamespaceAndPod(t *testing.T) {
	env := testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	rc, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	nsName := fmt.Sprintf("itest-%d", time.Now().UnixNano())
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), nsName, metav1.DeleteOptions{})
	})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Labels: map[string]string{"app": "hello"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "hello", Image: env.BaseImage, Command: []string{"sleep", "3600"},
		}}},
	}
	if _, err := cs.CoreV1().Pods(nsName).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	got, err := cs.CoreV1().Pods(nsName).Get(ctx, "hello", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading pod back: %v", err)
	}
	if got.Spec.Containers[0].Image != env.BaseImage || got.Labels["app"] != "hello" || got.UID == "" {
		t.Fatalf("pod read back differs: image=%s labels=%v uid=%q", got.Spec.Containers[0].Image, got.Labels, got.UID)
	}
	// The API server really validates: an invalid object is refused.
	bad := pod.DeepCopy()
	bad.Name = "Not_A_Valid_Name"
	if _, err := cs.CoreV1().Pods(nsName).Create(ctx, bad, metav1.CreateOptions{}); err == nil {
		t.Fatal("API server accepted an invalid pod name")
	}
}

// TestControllersCreateReplicaSetsAndPods: the second cluster runs the
// Deployment and ReplicaSet controllers (a Deployment gets Pods), and the
// first runs none (a Deployment there stays alone).
func TestControllersCreateReplicaSetsAndPods(t *testing.T) {
	env := testenv.RequireControllers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nsName := fmt.Sprintf("itest-ctl-%d", time.Now().UnixNano())
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: env.BaseImage}}},
			},
		},
	}
	var clusters []*kubernetes.Clientset
	for _, kc := range []string{env.ControllersKubeconfig, env.Kubeconfig} {
		rc, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), nsName, metav1.DeleteOptions{}) })
		if _, err := cs.AppsV1().Deployments(nsName).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		clusters = append(clusters, cs)
	}
	for {
		pods, err := clusters[0].CoreV1().Pods(nsName).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) == 2 {
			if own := pods.Items[0].OwnerReferences; len(own) != 1 || own[0].Kind != "ReplicaSet" {
				t.Fatalf("pod owners %+v, want its ReplicaSet", own)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the controllers cluster made %d pods of 2", len(pods.Items))
		case <-time.After(100 * time.Millisecond):
		}
	}
	rs, err := clusters[1].AppsV1().ReplicaSets(nsName).List(ctx, metav1.ListOptions{})
	if err != nil || len(rs.Items) != 0 {
		t.Fatalf("the first cluster runs a Deployment controller: %d ReplicaSets (%v)", len(rs.Items), err)
	}
}
