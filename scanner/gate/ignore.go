package gate

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/gantry-dev/gantry/internal/files"
)

// Ignore is one accepted finding: a vulnerability id (optionally only in one
// package) or a whole package, with why it is accepted and until when.
type Ignore struct {
	// ID is a vulnerability id (CVE-2024-1234, GHSA-…; matched without
	// regard to case) or "pkg:NAME" for every finding in package NAME.
	ID string
	// Package, when set with a vulnerability id, limits the entry to that
	// package.
	Package string
	// Reason says why the finding is accepted. Required.
	Reason string
	// Expires is the last day (UTC) on which the entry applies.
	Expires time.Time
	// Line is where the entry starts in its file, for messages.
	Line int
	// Source names the file's owner for reports: "server
	// (scanner.ignoreFile FILE)" or "repository (FILE)". Set by the caller.
	Source string
}

// PackageOnly reports whether the entry covers a whole package.
func (ig Ignore) PackageOnly() (string, bool) { return strings.CutPrefix(ig.ID, "pkg:") }

// Expired says whether the entry no longer applies at now: it applies
// through the whole of its expiry day in UTC.
func (ig Ignore) Expired(now time.Time) bool {
	return !now.UTC().Before(ig.Expires.AddDate(0, 0, 1))
}

// ExpiresString is the expiry as written in the file.
func (ig Ignore) ExpiresString() string { return ig.Expires.Format(time.DateOnly) }

// MaxIgnoreFileSize bounds an ignore file.
const MaxIgnoreFileSize = 1 << 20

// maxEntries bounds how many entries one file may hold.
const maxEntries = 10000

type fileEntry struct {
	ID      string `yaml:"id"`
	Package string `yaml:"package"`
	Reason  string `yaml:"reason"`
	Expires string `yaml:"expires"`
}

type file struct {
	Ignores []fileEntry `yaml:"ignores"`
}

// LoadIgnoreFile reads and checks an ignore file; see ParseIgnores.
func LoadIgnoreFile(path string) ([]Ignore, error) {
	b, err := files.ReadBounded(path, MaxIgnoreFileSize)
	if err != nil {
		return nil, fmt.Errorf("ignore file: %w", err)
	}
	igs, err := ParseIgnores(b)
	if err != nil {
		return nil, fmt.Errorf("ignore file %s: %w", path, err)
	}
	return igs, nil
}

// ParseIgnores parses an ignore file:
//
//	ignores:
//	  - id: CVE-2099-0001        # or pkg:openssl for the whole package
//	    package: openssl         # optional, with a vulnerability id
//	    reason: not reachable: the service never parses certificates
//	    expires: 2026-12-31      # last day it applies (UTC)
//
// Every entry needs id, reason and expires; unknown keys, duplicates and
// malformed values are errors naming the line.
func ParseIgnores(b []byte) ([]Ignore, error) {
	if len(b) > MaxIgnoreFileSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxIgnoreFileSize)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: expected a mapping with the key ignores", root.Line)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%s (allowed keys: ignores; per entry: id, package, reason, expires)", strings.Join(te.Errors, "; "))
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	if len(f.Ignores) > maxEntries {
		return nil, fmt.Errorf("%d entries: at most %d", len(f.Ignores), maxEntries)
	}
	lines := entryLines(root)
	out := make([]Ignore, 0, len(f.Ignores))
	seen := map[string]int{}
	var errs []error
	for i, e := range f.Ignores {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		ig, err := checkEntry(e, line)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", line, err))
			continue
		}
		key := strings.ToUpper(ig.ID) + "\x00" + ig.Package
		if prev, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("line %d: duplicate of the entry on line %d", line, prev))
			continue
		}
		seen[key] = line
		out = append(out, ig)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func checkEntry(e fileEntry, line int) (Ignore, error) {
	ig := Ignore{ID: strings.TrimSpace(e.ID), Package: strings.TrimSpace(e.Package), Reason: strings.TrimSpace(e.Reason), Line: line}
	var missing []string
	if ig.ID == "" {
		missing = append(missing, "id")
	}
	if ig.Reason == "" {
		missing = append(missing, "reason")
	}
	if strings.TrimSpace(e.Expires) == "" {
		missing = append(missing, "expires (YYYY-MM-DD)")
	}
	if len(missing) > 0 {
		return Ignore{}, fmt.Errorf("entry needs %s", strings.Join(missing, ", "))
	}
	if err := checkToken("id", ig.ID, 200); err != nil {
		return Ignore{}, err
	}
	if name, ok := ig.PackageOnly(); ok {
		if name == "" {
			return Ignore{}, errors.New(`id "pkg:" needs a package name, e.g. pkg:openssl`)
		}
		if ig.Package != "" {
			return Ignore{}, errors.New("package is only used with a vulnerability id, not with pkg:NAME")
		}
	}
	if ig.Package != "" {
		if err := checkToken("package", ig.Package, 200); err != nil {
			return Ignore{}, err
		}
	}
	if len(ig.Reason) > 1000 {
		return Ignore{}, errors.New("reason longer than 1000 characters")
	}
	exp, err := time.Parse(time.DateOnly, strings.TrimSpace(e.Expires))
	if err != nil {
		return Ignore{}, fmt.Errorf("expires %q is not a date (YYYY-MM-DD)", e.Expires)
	}
	ig.Expires = exp
	return ig, nil
}

func checkToken(key, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s longer than %d characters", key, max)
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%s %q contains whitespace or control characters", key, s)
		}
	}
	return nil
}

// entryLines finds the line of each item under the ignores key.
func entryLines(root *yaml.Node) []int {
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "ignores" && root.Content[i+1].Kind == yaml.SequenceNode {
			var out []int
			for _, item := range root.Content[i+1].Content {
				out = append(out, item.Line)
			}
			return out
		}
	}
	return nil
}
