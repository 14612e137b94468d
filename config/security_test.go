package config

import (
	"strings"
	"testing"
)

func TestSecurityKeysValidate(t *testing.T) {
	oidcOK := "api:\n  oidc:\n    issuer: https://id.example\n    audience: gantry\n    jwksFile: /k.json\n    groups:\n      - group: dev\n        scopes: [runs:read]\n"
	for _, tc := range []struct {
		name, yaml, want string // want "" = valid
	}{
		{"TLS pair", "server:\n  tls:\n    certFile: c.pem\n    keyFile: k.pem\n", ""},
		{"cert without key", "server:\n  tls:\n    certFile: c.pem\n", "server.tls.certFile and server.tls.keyFile"},
		{"TLS and insecure", "server:\n  insecureHTTP: true\n  tls:\n    certFile: c.pem\n    keyFile: k.pem\n", "exclude each other"},
		{"header bound too small", "server:\n  maxHeaderBytes: 100\n", "maxHeaderBytes"},
		{"limit off", "server:\n  rateLimits:\n    webhookPerRepo: {rate: 0}\n", ""},
		{"negative rate", "server:\n  rateLimits:\n    apiPerToken: {rate: -1, burst: 1}\n", "apiPerToken.rate"},
		{"rate without burst", "server:\n  rateLimits:\n    webhookPerSource: {rate: 5, burst: 0}\n", "webhookPerSource.burst"},
		{"no keys tracked", "server:\n  rateLimits:\n    maxTrackedKeys: 0\n", "maxTrackedKeys"},
		{"trusted proxies", "server:\n  rateLimits:\n    trustedProxies: [10.0.0.0/8, 192.0.2.1, \"fd00::/8\"]\n", ""},
		{"bad trusted proxy", "server:\n  rateLimits:\n    trustedProxies: [ingress]\n", "trustedProxies"},
		{"unknown limit key", "server:\n  rateLimits:\n    perIP: {rate: 1}\n", "unknown key"},
		{"queued bound", "webhooks:\n  maxQueuedPerRepo: -1\n", "maxQueuedPerRepo"},
		{"oidc", oidcOK, ""},
		{"oidc without audience", strings.Replace(oidcOK, "    audience: gantry\n", "", 1), "audience is required"},
		{"oidc with two key sources", strings.Replace(oidcOK, "jwksFile: /k.json", "jwksFile: /k.json\n    jwksURL: https://id.example/keys", 1), "exactly one"},
		{"oidc without groups", strings.Split(oidcOK, "    groups:")[0], "maps no group"},
		{"oidc bad scope", strings.Replace(oidcOK, "runs:read", "root", 1), "not a scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadString(t, tc.yaml)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	cfg, err := loadString(t, "")
	if err != nil || cfg.Server.InsecureHTTP || cfg.Server.TLS.CertFile != "" || cfg.Server.RateLimits.FailedAuthPerSource.Rate == 0 || cfg.API.OIDC.Enabled() {
		t.Fatalf("defaults: %v %+v", err, cfg.Server)
	}
}
