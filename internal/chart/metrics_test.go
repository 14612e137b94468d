package chart

import (
	"fmt"
	"path/filepath"
	"testing"
)

// TestReceiverMetricsListener: the receiver never serves /metrics on 8443
// (the port GitHub's webhooks reach); with pipeline.receiver.metricsNamespaces
// it serves them on metricsPort (server.metricsListen in the config),
// reachable from those namespaces only, not through the receiver's Service,
// and announced to Prometheus by the pod's annotations. Without scrapers
// there is no metrics listener at all.
func TestReceiverMetricsListener(t *testing.T) {
	for _, tc := range []struct {
		name     string
		scrapers []any
	}{
		{name: "default: no metrics listener"},
		{name: "scraped from monitoring", scrapers: []any{"monitoring"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			on := len(tc.scrapers) > 0
			out, err := Render(filepath.Join(root(t), ChartDir), Release{Name: "gantry", Namespace: "gantry-system"}, map[string]any{
				"pipeline":  map[string]any{"receiver": map[string]any{"metricsNamespaces": tc.scrapers}},
				"admission": map[string]any{"tls": map[string]any{"mode": "secret", "existingSecret": "gantry-admission-tls", "caBundle": "Y2E="}},
			})
			if err != nil {
				t.Fatal(err)
			}
			docs, err := Documents(out)
			if err != nil {
				t.Fatal(err)
			}
			var receiver map[string]any
			for _, d := range byKind(t, docs, "Deployment") {
				if str(d, "metadata", "name") == "gantry-receiver" {
					receiver = d
				}
			}
			ports := fmt.Sprint(get(receiver, "spec", "template", "spec", "containers", 0, "ports"))
			wantPorts := "[map[containerPort:8443 name:https protocol:TCP]]"
			if on {
				wantPorts = "[map[containerPort:8443 name:https protocol:TCP] map[containerPort:9090 name:metrics protocol:TCP]]"
			}
			if ports != wantPorts {
				t.Errorf("receiver ports %s, want %s", ports, wantPorts)
			}
			ann := get(receiver, "spec", "template", "metadata", "annotations").(map[string]any)
			if got := fmt.Sprintf("%v %v %v", ann["prometheus.io/scrape"], ann["prometheus.io/port"], ann["prometheus.io/scheme"]); on && got != "true 9090 https" || !on && ann["prometheus.io/scrape"] != nil {
				t.Errorf("receiver scrape annotations %v", ann)
			}

			cfg := renderedConfig(t, docs, "gantry-pipeline")
			if want := map[bool]string{true: ":9090"}[on]; cfg.Server.MetricsListen != want || cfg.Server.Listen != ":8443" {
				t.Errorf("server.listen %q, server.metricsListen %q, want :8443 and %q", cfg.Server.Listen, cfg.Server.MetricsListen, want)
			}

			for _, svc := range byKind(t, docs, "Service") {
				if str(svc, "metadata", "name") == "gantry-receiver" {
					if got := fmt.Sprint(get(svc, "spec", "ports")); got != "[map[name:https port:443 protocol:TCP targetPort:https]]" {
						t.Errorf("receiver Service ports %s: the metrics port must not be exposed with the webhooks", got)
					}
				}
			}
			var policy map[string]any
			for _, np := range byKind(t, docs, "NetworkPolicy") {
				if str(np, "metadata", "name") == "gantry-receiver" {
					policy = np
				}
			}
			rules, _ := get(policy, "spec", "ingress").([]any)
			if len(rules) == 0 || fmt.Sprint(get(rules[0], "ports")) != "[map[port:8443 protocol:TCP]]" {
				t.Fatalf("receiver ingress %v: the first rule must be 8443", rules)
			}
			if !on {
				if len(rules) != 1 {
					t.Errorf("receiver ingress %v, want only 8443", rules)
				}
				return
			}
			if len(rules) != 2 || fmt.Sprint(get(rules[1], "ports")) != "[map[port:9090 protocol:TCP]]" ||
				fmt.Sprint(get(rules[1], "from", 0, "namespaceSelector", "matchExpressions", 0, "values")) != "[monitoring]" ||
				len(get(rules[1], "from").([]any)) != 1 {
				t.Errorf("receiver ingress %v, want 9090 from namespace monitoring only", rules)
			}
		})
	}
}
