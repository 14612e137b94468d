package config

import (
	"strings"
	"testing"
	"time"
)

func TestDeployValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Deploy)
		want   string
	}{
		{"defaults", func(*Deploy) {}, ""},
		{"bad namespace", func(d *Deploy) { d.Namespace = "Functions" }, "deploy.namespace"},
		{"root user", func(d *Deploy) { d.RunAsUser = 0 }, "never run as root"},
		{"root group", func(d *Deploy) { d.RunAsGroup = 0 }, "never run as root"},
		{"port", func(d *Deploy) { d.Port = 70000 }, "deploy.port"},
		{"rollout timeout", func(d *Deploy) { d.RolloutTimeout = 0 }, "deploy.rolloutTimeout"},
		{"request timeout", func(d *Deploy) { d.RequestTimeout = -time.Second }, "deploy.requestTimeout"},
		{"tmp size", func(d *Deploy) { d.TmpSizeLimit = "big" }, "deploy.tmpSizeLimit"},
		{"default memory", func(d *Deploy) { d.DefaultResources.MemoryLimit = "1 GB" }, "deploy.defaultResources.memoryLimit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := DefaultDeploy()
			tc.mutate(&d)
			err := d.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %q, got %v", tc.want, err)
			}
		})
	}
}

func TestNotifyValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Notify)
		want   string
	}{
		{"defaults", func(*Notify) {}, ""},
		{"loopback http sink", func(n *Notify) {
			n.CloudEvents.URL, n.CloudEvents.SecretFile = "http://127.0.0.1:9000/events", "/k"
		}, ""},
		{"github enterprise", func(n *Notify) { n.GitHub.APIURL = "https://ghe.example/api/v3/" }, ""},
		{"plain http to a remote host", func(n *Notify) {
			n.CloudEvents.URL, n.CloudEvents.SecretFile = "http://sink.example/", "/k"
		}, "only to loopback"},
		{"unsigned sink", func(n *Notify) { n.CloudEvents.URL = "https://sink.example/" }, "secretFile is required"},
		{"credentials in url", func(n *Notify) { n.GitHub.APIURL = "https://user:pw@api.github.com/" }, "credentials"},
		{"token and app", func(n *Notify) {
			n.GitHub.TokenFile, n.GitHub.AppID, n.GitHub.PrivateKeyFile = "/t", 1, "/k"
		}, "not both"},
		{"app without key", func(n *Notify) { n.GitHub.AppID = 1 }, "set together"},
		{"installation without app", func(n *Notify) { n.GitHub.InstallationID = 5 }, "needs notify.github.appID"},
		{"attempts", func(n *Notify) { n.Attempts = 0 }, "notify.attempts"},
		{"backoff order", func(n *Notify) { n.MaxBackoff = n.Backoff / 2 }, "maxBackoff"},
		{"timeout", func(n *Notify) { n.Timeout = 0 }, "notify.timeout"},
		{"top findings", func(n *Notify) { n.TopFindings = 51 }, "topFindings"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := DefaultNotify()
			tc.mutate(&n)
			err := n.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %q, got %v", tc.want, err)
			}
		})
	}
}

func TestNotifyWhenAllowed(t *testing.T) {
	if _, err := Load(Source{Env: []string{"GANTRY_NOTIFY_WHEN=sometimes"}}); err == nil || !strings.Contains(err.Error(), "notify.when") {
		t.Fatalf("want notify.when refused, got %v", err)
	}
	if _, err := Load(Source{Env: []string{"GANTRY_DEPLOY_MODE=helm"}}); err == nil || !strings.Contains(err.Error(), "deploy.mode") {
		t.Fatalf("want deploy.mode refused, got %v", err)
	}
}
