package scanner

import (
	"context"
	"fmt"
	"io"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/aquasecurity/trivy/pkg/sbom/cyclonedx"
)

// WriteCycloneDX writes the image's SBOM as CycloneDX JSON, rendered from
// the analysis the scan already made (the image is not read again). It
// lists every package found, and the vulnerabilities found in them.
func (r *Result) WriteCycloneDX(ctx context.Context, w io.Writer) error {
	m := cyclonedx.NewMarshaler(TrivyVersion())
	bom, err := m.MarshalReport(ctx, r.trivy)
	if err != nil {
		return fmt.Errorf("CycloneDX: %w", err)
	}
	enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(bom); err != nil {
		return fmt.Errorf("CycloneDX: %w", err)
	}
	return nil
}
