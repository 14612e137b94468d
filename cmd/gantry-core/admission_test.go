package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestAdmissionUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"admission"}, "no serving certificate"},
		{[]string{"admission", "--tls-cert", filepath.Join(dir, "c")}, "must be set together"},
		{[]string{"admission", "--tls-cert", "c", "--tls-key", "k", "--tls-self-signed", dir}, "mutually exclusive"},
		{[]string{"admission", "--tls-self-signed", dir, "--tls-hosts", ""}, "at least one DNS name"},
		{[]string{"admission", "--tls-cert", filepath.Join(dir, "missing.crt"), "--tls-key", filepath.Join(dir, "missing.key")}, "missing.crt"},
	} {
		code, _, stderr := gantry(t, nil, c.args...)
		if code != exitFailure || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, stderr, c.want)
		}
	}
}
