package config

import (
	"strings"
	"testing"
)

func TestTenants(t *testing.T) {
	tn := Tenants{
		Secrets:    map[string][]string{"acme/hello": {"hello-*", "shared-db"}},
		Namespaces: map[string]string{"acme/other": "fn-other"},
	}
	if err := tn.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		repo, secret string
		want         bool
	}{
		{"acme/hello", "hello-api", true},
		{"ACME/Hello", "shared-db", true},
		{"acme/hello", "other-api", false},
		{"acme/hello", "hello", false},
		{"acme/other", "hello-api", false}, // not listed: none
	} {
		if got := tn.SecretAllowed(c.repo, c.secret); got != c.want {
			t.Errorf("%s mounting %s: %v, want %v", c.repo, c.secret, got, c.want)
		}
	}
	if tn.Namespace("ACME/other") != "fn-other" || tn.Namespace("acme/hello") != "" {
		t.Errorf("namespaces %q %q", tn.Namespace("acme/other"), tn.Namespace("acme/hello"))
	}
	for _, bad := range []struct {
		tn   Tenants
		want string
	}{
		{Tenants{Secrets: map[string][]string{"hello": {"x"}}}, "not owner/name"},
		{Tenants{Secrets: map[string][]string{"a/b": {"[x"}}}, "not a valid glob"},
		{Tenants{Namespaces: map[string]string{"a/b": "Not_A_Label"}}, "DNS-1123"},
	} {
		if err := bad.tn.Validate(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: %v, want %q", bad.tn, err, bad.want)
		}
	}
}
