package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantry-dev/gantry/scanner/scantest"
)

// fileWriter returns a function that writes a 0600 file named name into
// dir and returns its path.
func fileWriter(t *testing.T, dir string) func(name string, b []byte) string {
	return func(name string, b []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// pushTestDB pushes the test Trivy DB (scantest's planted advisories) to
// ref in the test registry.
func pushTestDB(ctx context.Context, t *testing.T, ref string) {
	t.Helper()
	archive, err := scantest.DBArchive(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := scantest.PushDB(ctx, ref, archive, nameInsecure()...); err != nil {
		t.Fatal(err)
	}
}

// cosignKeyFiles makes a cosign key pair with the password "pw" and writes
// cosign.key and cosign.pub into dir.
func cosignKeyFiles(t *testing.T, dir string) (keyPath, pubPath string) {
	t.Helper()
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("pw"), nil })
	if err != nil {
		t.Fatal(err)
	}
	write := fileWriter(t, dir)
	return write("cosign.key", kb.PrivateBytes), write("cosign.pub", kb.PublicBytes)
}

// kubeNamespace returns a client of the test cluster at kubeconfig and
// creates namespace ns in it, deleted when the test ends.
func kubeNamespace(ctx context.Context, t *testing.T, kubeconfig, ns string) *kubernetes.Clientset {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	return cs
}
