// Package codescanning prepares the SARIF logs Gantry makes (lint, scan)
// for an upload to GitHub code scanning (github/codeql-action/upload-sarif),
// which since July 2025 refuses an upload holding two runs of one tool in
// one category, and anchors alerts at files of the repository.
//
//   - Every run gets automationDetails.id = the category given (ending in
//     "/": GitHub takes the category as the id up to its last slash), so a
//     directory of per-function files uploads as distinct analyses.
//   - A scan's findings are in an image, not in the repository: with an
//     Anchor, each result's location becomes that repository file (the
//     function's Dockerfile, line 1), and the path inside the image is kept
//     in the result's properties (imagePath) and the location's message.
//   - A result without a region gets startLine 1, which code scanning needs.
//
// The log is edited as generic JSON, so every other property is kept.
package codescanning

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
)

// Options say how to prepare one SARIF file.
type Options struct {
	// Category is the code-scanning category of every run, e.g.
	// "gantry/scan/hello/". A trailing "/" is added when missing.
	Category string
	// Anchor, when set, is the repository-relative file every result is
	// located at (the findings are not in the repository's files).
	Anchor string
}

// Prepare returns the SARIF log b prepared as o says.
func Prepare(b []byte, o Options) ([]byte, error) {
	if o.Category == "" {
		return nil, errors.New("codescanning: a category is required")
	}
	if !strings.HasSuffix(o.Category, "/") {
		o.Category += "/"
	}
	if o.Anchor != "" {
		if a := path.Clean(o.Anchor); path.IsAbs(a) || a == ".." || strings.HasPrefix(a, "../") {
			return nil, fmt.Errorf("codescanning: anchor %q is not relative to the repository root", o.Anchor)
		}
		o.Anchor = path.Clean(o.Anchor)
	}
	var log map[string]any
	if err := json.Unmarshal(b, &log); err != nil {
		return nil, fmt.Errorf("codescanning: the SARIF log does not decode: %w", err)
	}
	runs, _ := log["runs"].([]any)
	if v, _ := log["version"].(string); v != "2.1.0" || runs == nil {
		return nil, fmt.Errorf("codescanning: not a SARIF 2.1.0 log with runs (version %q)", v)
	}
	for _, r := range runs {
		run, ok := r.(map[string]any)
		if !ok {
			return nil, errors.New("codescanning: a run is not an object")
		}
		ad, _ := run["automationDetails"].(map[string]any)
		if ad == nil {
			ad = map[string]any{}
		}
		ad["id"] = o.Category
		run["automationDetails"] = ad
		results, _ := run["results"].([]any)
		for _, x := range results {
			res, ok := x.(map[string]any)
			if !ok {
				return nil, errors.New("codescanning: a result is not an object")
			}
			prepareResult(res, o.Anchor)
		}
	}
	return json.MarshalIndent(log, "", "  ")
}

func prepareResult(res map[string]any, anchor string) {
	locs, _ := res["locations"].([]any)
	if anchor != "" {
		var inImage []string
		for _, l := range locs {
			if uri := locationURI(l); uri != "" {
				inImage = append(inImage, uri)
			}
		}
		loc := map[string]any{"physicalLocation": map[string]any{
			"artifactLocation": map[string]any{"uri": anchor},
			"region":           map[string]any{"startLine": 1},
		}}
		if len(locs) > 0 {
			if m, ok := locs[0].(map[string]any); ok && m["message"] != nil {
				loc["message"] = m["message"]
			}
		}
		res["locations"] = []any{loc}
		if len(inImage) > 0 {
			props, _ := res["properties"].(map[string]any)
			if props == nil {
				props = map[string]any{}
			}
			props["imagePath"] = inImage[0]
			res["properties"] = props
		}
		return
	}
	for _, l := range locs {
		m, _ := l.(map[string]any)
		pl, _ := m["physicalLocation"].(map[string]any)
		if pl == nil {
			continue
		}
		region, _ := pl["region"].(map[string]any)
		if region == nil {
			region = map[string]any{}
			pl["region"] = region
		}
		if n, _ := region["startLine"].(float64); n < 1 {
			region["startLine"] = 1
		}
	}
}

func locationURI(l any) string {
	m, _ := l.(map[string]any)
	pl, _ := m["physicalLocation"].(map[string]any)
	al, _ := pl["artifactLocation"].(map[string]any)
	uri, _ := al["uri"].(string)
	return uri
}
