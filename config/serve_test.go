package config

import (
	"strings"
	"testing"
)

func TestServeSectionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		want string // "" = valid
	}{
		{"defaults", "", ""},
		{"repos", "webhooks:\n  repos:\n    - name: acme/app\n      tags: [\"v*\"]\n", ""},
		{"bad listen", "server:\n  listen: nowhere\n", "server.listen"},
		{"zero timeout", "server:\n  readTimeout: 0s\n", "server.readTimeout"},
		{"metrics listener", "server:\n  metricsListen: \":9090\"\n", ""},
		{"bad metrics listener", "server:\n  metricsListen: \"9090\"\n", "server.metricsListen"},
		{"metrics on the public listener", "server:\n  listen: 0.0.0.0:8443\n  metricsListen: 0.0.0.0:8443\n", "own port"},
		{"enqueue timeout beyond GitHub's", "webhooks:\n  enqueueTimeout: 10s\n", "enqueueTimeout"},
		{"repo without owner", "webhooks:\n  repos:\n    - name: app\n", "owner/name"},
		{"duplicate repo", "webhooks:\n  repos:\n    - name: a/b\n    - name: A/B\n", "twice"},
		{"bad glob", "webhooks:\n  repos:\n    - name: a/b\n      branches: [\"[\"]\n", "glob"},
		{"unknown repo key", "webhooks:\n  repos:\n    - name: a/b\n      branch: main\n", "unknown key webhooks.repos[].branch"},
		{"short delivery TTL", "queue:\n  deliveryTTL: 1h\n", "3-day"},
		{"open embedded port without token", "queue:\n  embeddedListen: 127.0.0.1:4222\n", "tokenFile"},
		{"cert without key", "queue:\n  tlsCertFile: c.pem\n", "go together"},
		{"no data dir, no url", "queue:\n  dataDir: \"\"\n", "dataDir"},
		{"workers", "queue:\n  workers: 0\n", "queue.workers"},
		{"ack wait", "queue:\n  ackWait: 100ms\n", "ackWait"},
		{"public URL", "api:\n  publicURL: ftp://x\n", "publicURL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadString(t, tc.yaml)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	cfg, err := loadString(t, "webhooks:\n  repos:\n    - name: acme/app\n")
	if err != nil || strings.Join(cfg.Webhooks.Repos[0].Branches, ",") != "main" {
		t.Fatalf("default branches: %v %+v", err, cfg)
	}
}

func loadString(t *testing.T, y string) (*Config, error) {
	t.Helper()
	return Load(Source{File: writeFile(t, y)})
}
