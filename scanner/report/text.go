package report

import (
	"bytes"
	"io"
	"strings"
	"unicode"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// clean makes a string from the scanned image or the DB safe to print on a
// terminal or in markdown: control characters (ANSI escapes, newlines) are
// replaced, and the length is capped.
func clean(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if max > 0 && len(s) > max {
		// Cut on a rune boundary.
		cut := max
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
