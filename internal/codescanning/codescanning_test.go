package codescanning

import (
	"encoding/json"
	"strings"
	"testing"
)

const lintLog = `{"version":"2.1.0","$schema":"https://json.schemastore.org/sarif-2.1.0.json","runs":[
 {"tool":{"driver":{"name":"gantry","rules":[{"id":"gantry-root-user"}]}},"results":[
  {"ruleId":"gantry-root-user","level":"error","message":{"text":"runs as root"},
   "locations":[{"physicalLocation":{"artifactLocation":{"uri":"fn/Dockerfile"}}}]},
  {"ruleId":"gantry-root-user","level":"error","message":{"text":"x"},
   "locations":[{"physicalLocation":{"artifactLocation":{"uri":"fn/Dockerfile"},"region":{"startLine":3}}}]}]},
 {"tool":{"driver":{"name":"buildkit-checks"}},"automationDetails":{"id":"old/","guid":"g"},"results":[]}]}`

const scanLog = `{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"Gantry"}},"results":[
  {"ruleId":"CVE-1","message":{"text":"m"},"partialFingerprints":{"gantry/v1":"CVE-1/deb/openssl/"},
   "locations":[{"physicalLocation":{"artifactLocation":{"uri":"team/hello"},"region":{"startLine":1,"startColumn":1}},"message":{"text":"team/hello: openssl@3"}}]},
  {"ruleId":"GHSA-1","message":{"text":"m"},"properties":{"k":"v"},
   "locations":[{"physicalLocation":{"artifactLocation":{"uri":"app/package.json"}}}]}]}]}`

type log struct {
	Runs []struct {
		AutomationDetails map[string]string `json:"automationDetails"`
		Results           []struct {
			PartialFingerprints map[string]string `json:"partialFingerprints"`
			Properties          map[string]string `json:"properties"`
			Locations           []struct {
				PhysicalLocation struct {
					ArtifactLocation struct{ URI string }    `json:"artifactLocation"`
					Region           struct{ StartLine int } `json:"region"`
				} `json:"physicalLocation"`
				Message *struct{ Text string } `json:"message"`
			} `json:"locations"`
		} `json:"results"`
	} `json:"runs"`
}

func TestPrepare(t *testing.T) {
	cases := []struct {
		name, in string
		o        Options
		uris     []string // per result, in order across runs
		lines    []int
		image    []string // properties.imagePath per result
	}{
		{"lint: category on every run, missing region gets line 1", lintLog, Options{Category: "gantry/lint/hello"},
			[]string{"fn/Dockerfile", "fn/Dockerfile"}, []int{1, 3}, []string{"", ""}},
		{"scan: anchored at the Dockerfile, image path kept", scanLog, Options{Category: "gantry/scan/hello/", Anchor: "./fn/Dockerfile"},
			[]string{"fn/Dockerfile", "fn/Dockerfile"}, []int{1, 1}, []string{"team/hello", "app/package.json"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := Prepare([]byte(c.in), c.o)
			if err != nil {
				t.Fatal(err)
			}
			var l log
			if err := json.Unmarshal(out, &l); err != nil {
				t.Fatal(err)
			}
			var i int
			for _, r := range l.Runs {
				if id := r.AutomationDetails["id"]; !strings.HasSuffix(id, "/") || strings.TrimSuffix(id, "/") != strings.TrimSuffix(c.o.Category, "/") {
					t.Errorf("automationDetails.id %q, want %q with a trailing /", id, c.o.Category)
				}
				for _, res := range r.Results {
					if len(res.Locations) != 1 {
						t.Fatalf("result %d: %d locations", i, len(res.Locations))
					}
					pl := res.Locations[0].PhysicalLocation
					if pl.ArtifactLocation.URI != c.uris[i] || pl.Region.StartLine != c.lines[i] || res.Properties["imagePath"] != c.image[i] {
						t.Errorf("result %d: %s:%d image %q, want %s:%d image %q", i, pl.ArtifactLocation.URI, pl.Region.StartLine,
							res.Properties["imagePath"], c.uris[i], c.lines[i], c.image[i])
					}
					i++
				}
			}
			if i != len(c.uris) {
				t.Fatalf("%d results, want %d", i, len(c.uris))
			}
		})
	}
	// What was there stays: fingerprints, other properties, the location's
	// message, the automationDetails' other fields, $schema.
	out, _ := Prepare([]byte(scanLog), Options{Category: "c", Anchor: "Dockerfile"})
	for _, want := range []string{`"gantry/v1": "CVE-1/deb/openssl/"`, `"k": "v"`, `"team/hello: openssl@3"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("lost %s:\n%s", want, out)
		}
	}
	out, _ = Prepare([]byte(lintLog), Options{Category: "c"})
	for _, want := range []string{`"guid": "g"`, `"$schema"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("lost %s:\n%s", want, out)
		}
	}
}

func TestPrepareRefuses(t *testing.T) {
	cases := map[string]struct {
		in   string
		o    Options
		want string
	}{
		"no category":       {lintLog, Options{}, "category is required"},
		"not JSON":          {"{", Options{Category: "c"}, "does not decode"},
		"SARIF 2.0":         {`{"version":"2.0.0","runs":[]}`, Options{Category: "c"}, "not a SARIF 2.1.0"},
		"no runs":           {`{"version":"2.1.0"}`, Options{Category: "c"}, "not a SARIF 2.1.0"},
		"absolute anchor":   {scanLog, Options{Category: "c", Anchor: "/etc/passwd"}, "not relative"},
		"anchor outside":    {scanLog, Options{Category: "c", Anchor: "a/../../x"}, "not relative"},
		"run not object":    {`{"version":"2.1.0","runs":[1]}`, Options{Category: "c"}, "run is not an object"},
		"result not object": {`{"version":"2.1.0","runs":[{"results":["x"]}]}`, Options{Category: "c"}, "result is not an object"},
	}
	for name, c := range cases {
		if _, err := Prepare([]byte(c.in), c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// FuzzPrepare: any input either is refused or comes out as a log whose
// every run has the category.
func FuzzPrepare(f *testing.F) {
	f.Add([]byte(lintLog), "")
	f.Add([]byte(scanLog), "fn/Dockerfile")
	f.Add([]byte(`{"version":"2.1.0","runs":[{"results":[{"locations":[1,{"physicalLocation":{"region":"x"}}]}]}]}`), "")
	f.Fuzz(func(t *testing.T, b []byte, anchor string) {
		out, err := Prepare(b, Options{Category: "gantry/x/", Anchor: anchor})
		if err != nil {
			return
		}
		var l struct {
			Version string `json:"version"`
			Runs    []struct {
				AutomationDetails struct {
					ID any `json:"id"`
				} `json:"automationDetails"`
			} `json:"runs"`
		}
		if err := json.Unmarshal(out, &l); err != nil {
			t.Fatalf("output is not a log: %v\n%s", err, out)
		}
		for _, r := range l.Runs {
			if r.AutomationDetails.ID != "gantry/x/" {
				t.Fatalf("run without the category: %s", out)
			}
		}
	})
}
