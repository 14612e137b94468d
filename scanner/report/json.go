package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Document is the JSON output of `gantry scan --output json` and the report
// stored beside a pipeline run. Its schema is documented in docs/scanner.md.
type Document struct {
	SchemaVersion int          `json:"schemaVersion"`
	Verdict       *Verdict     `json:"verdict,omitempty"`
	Image         Image        `json:"image"`
	ScannedAt     time.Time    `json:"scannedAt"`
	Scanner       ScannerInfo  `json:"scanner"`
	DB            DBInfo       `json:"db"`
	Packages      int          `json:"packages"`
	Findings      []DocFinding `json:"findings"`
}

// DocFinding is a finding with the gate's decision on it.
type DocFinding struct {
	Finding
	Gate *Decision `json:"gate,omitempty"`
}

// NewDocument joins a report and its verdict (nil when no gate ran).
func NewDocument(r *Report, v *Verdict) *Document {
	d := &Document{
		SchemaVersion: SchemaVersion, Verdict: v, Image: r.Image, ScannedAt: r.ScannedAt,
		Scanner: r.Scanner, DB: r.DB, Packages: r.Packages,
		Findings: make([]DocFinding, len(r.Findings)),
	}
	for i, f := range r.Findings {
		d.Findings[i].Finding = f
		if dec := decisionAt(v, i, len(r.Findings)); dec != nil {
			d.Findings[i].Gate = dec
		}
	}
	return d
}

// decisionAt returns the decision for finding i, or nil when the verdict
// does not cover the report (no gate, or a verdict for another report).
func decisionAt(v *Verdict, i, n int) *Decision {
	if v == nil || len(v.Decisions) != n {
		return nil
	}
	d := v.Decisions[i]
	return &d
}

// WriteJSON writes the document, indented.
func WriteJSON(w io.Writer, r *Report, v *Verdict) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(NewDocument(r, v))
}

// MaxDocumentSize bounds a document read back with ReadJSON.
const MaxDocumentSize = 64 << 20

// ReadJSON reads a document written by WriteJSON, refusing other schema
// versions and unknown fields.
func ReadJSON(r io.Reader) (*Document, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("scan report: %w", err)
	}
	if len(b) > MaxDocumentSize {
		return nil, fmt.Errorf("scan report: larger than %d bytes", MaxDocumentSize)
	}
	var probe struct {
		SchemaVersion int `json:"schemaVersion"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("scan report: not JSON: %w", err)
	}
	if probe.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("scan report: schemaVersion %d, this Gantry reads %d", probe.SchemaVersion, SchemaVersion)
	}
	var d Document
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("scan report: %w", err)
	}
	if dec.More() {
		return nil, errors.New("scan report: trailing data after the document")
	}
	return &d, nil
}
