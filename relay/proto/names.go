package proto

import "fmt"

// MaxNameLen bounds queue and worker names.
const MaxNameLen = 128

// CheckName reports whether s can name a queue or a worker: 1 to 128
// characters from A-Z, a-z, 0-9, '.', '_' and '-'. what ("queue",
// "worker") goes into the error.
func CheckName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s name is empty", what)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%s name %.20q… is %d characters; at most %d", what, s, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("%s name %q has %q at byte %d; use only A-Z, a-z, 0-9, '.', '_' and '-'", what, s, c, i)
		}
	}
	return nil
}
