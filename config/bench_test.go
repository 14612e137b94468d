package config

import "testing"

// Every gantry command loads the configuration before it does anything,
// so Load is part of every command's start-up.
func BenchmarkLoad(b *testing.B) {
	for _, bc := range []struct {
		name string
		src  Source
	}{
		{"defaults", Source{Env: []string{"PATH=/usr/bin:/bin", "HOME=/root"}}},
		{"env", Source{Env: []string{"GANTRY_LOG_LEVEL=debug", "GANTRY_ADMISSION_REQUIRE_DIGEST=true"}}},
		{"flags", Source{Flags: map[string]string{"log.format": "json"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Load(bc.src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
