package files

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadBounded(t *testing.T) {
	p := write(t, "12345")
	if b, err := ReadBounded(p, 5); err != nil || string(b) != "12345" {
		t.Fatalf("at the limit: %q %v", b, err)
	}
	if _, err := ReadBounded(p, 4); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), p) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := ReadBounded(filepath.Join(t.TempDir(), "absent"), 4); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("absent: %v", err)
	}
}

func TestReadSecret(t *testing.T) {
	if b, err := ReadSecret(write(t, "  s3cret\r\n"), 64); err != nil || string(b) != "s3cret" {
		t.Fatalf("trimmed: %q %v", b, err)
	}
	if _, err := ReadSecret(write(t, " \n\t"), 64); !errors.Is(err, ErrEmpty) {
		t.Fatalf("blank: %v", err)
	}
	_, err := ReadSecret(write(t, "hunter2-hunter2"), 8)
	if !errors.Is(err, ErrTooLarge) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("oversized secret: %v", err)
	}
}
