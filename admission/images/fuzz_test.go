package images

import (
	"strings"
	"testing"
)

// FuzzParseUser: a user is numeric only when its user part (before the
// first ':') is empty or ASCII digits, exactly as the runtime reads it
// (no trimming, no sign); it is root only when that part is empty, "root"
// or a number equal to 0; and Raw is the input unchanged.
func FuzzParseUser(f *testing.F) {
	for _, s := range []string{"", "0", "root", "0:0", "root:wheel", "1000", "1000:1000", " 1000", " 0 ", "1000 ",
		"+1000", "-0", "0x10", "1_000", "٣", "00", ":0", "4294967295", "4294967296", "app:0", "1000: 0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u := ParseUser(s)
		if u.Raw != s {
			t.Fatalf("Raw %q, want %q", u.Raw, s)
		}
		userPart, _, _ := strings.Cut(s, ":")
		digits := userPart != "" && strings.Trim(userPart, "0123456789") == ""
		if u.Numeric && userPart != "" && !digits {
			t.Fatalf("ParseUser(%q) is numeric but the user part %q is not ASCII digits", s, userPart)
		}
		if u.Root && !(userPart == "" || userPart == "root" || strings.Trim(userPart, "0") == "" && digits) {
			t.Fatalf("ParseUser(%q) is root but the user part is %q", s, userPart)
		}
		if !u.Root && (userPart == "" || userPart == "root" || digits && strings.Trim(userPart, "0") == "") {
			t.Fatalf("ParseUser(%q) is not root but the user part %q names UID 0", s, userPart)
		}
		if u.Numeric && !u.Root && strings.ContainsAny(userPart, " \t\r\n\v\f") {
			t.Fatalf("ParseUser(%q): a user with spaces proven non-root", s)
		}
	})
}
