package config

import (
	"slices"
	"strings"
	"testing"
)

func TestBuilderAndLintSections(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  []string
		want string // error substring; "" means valid
	}{
		{name: "defaults", yaml: ""},
		{name: "unix and tcp pool", yaml: "builder:\n  addrs: [unix:///run/bk.sock, tcp://10.0.0.2:1234]\n  tls: {caCert: /ca.pem, cert: /c.pem, key: /k.pem}\n"},
		{name: "env pool", env: []string{"GANTRY_BUILDER_ADDRS=unix:///a.sock,tcp://b:1"}},
		{name: "no address", yaml: "builder:\n  addrs: []\n", want: "at least one"},
		{name: "bad scheme", yaml: "builder:\n  addrs: [http://x:1]\n", want: "unix:///path or tcp://host:port"},
		{name: "cert without key", yaml: "builder:\n  tls: {cert: /c.pem}\n", want: "cert and key"},
		{name: "bad provenance", yaml: "builder:\n  provenance: maybe\n", want: "builder.provenance"},
		{name: "bad platform", yaml: "builder:\n  platforms: [amd64]\n", want: "os/arch"},
		{name: "bad cache mode", yaml: "builder:\n  cache: {mode: all}\n", want: "builder.cache.mode"},
		{name: "zero timeout", yaml: "builder:\n  timeout: 0s\n", want: "builder.timeout"},
		{name: "lint overrides", yaml: "lint:\n  failOn: warning\n  severity: {gantry-base-unpinned: error, JSONArgsRecommended: \"off\"}\n  ignore:\n    - {rule: DL3008, reason: pinned by base, file: a/Dockerfile}\n"},
		{name: "lint bad failOn", yaml: "lint:\n  failOn: loud\n", want: "lint.failOn"},
		{name: "lint bad severity", yaml: "lint:\n  severity: {x: loud}\n", want: "lint.severity.x"},
		{name: "lint ignore without reason", yaml: "lint:\n  ignore:\n    - rule: gantry-add-url\n", want: "reason is required"},
		{name: "lint unknown key", yaml: "lint:\n  ignores: []\n", want: "unknown key lint.ignores"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := Source{Env: tc.env}
			if tc.yaml != "" {
				src.File = writeFile(t, tc.yaml)
			}
			cfg, err := Load(src)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "defaults" && (cfg.Builder.Provenance != "max" || cfg.Lint.FailOn != "error" || len(cfg.Builder.Addrs) != 1) {
				t.Errorf("defaults: %+v %+v", cfg.Builder, cfg.Lint)
			}
			if tc.name == "env pool" && !slices.Equal(cfg.Builder.Addrs, []string{"unix:///a.sock", "tcp://b:1"}) {
				t.Errorf("addrs from env: %v", cfg.Builder.Addrs)
			}
		})
	}
}
