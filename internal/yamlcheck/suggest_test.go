package yamlcheck

import "testing"

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"listen", "listen", 0},
		{"lisen", "listen", 1},   // a deletion
		{"listenn", "listen", 1}, // an insertion
		{"lusten", "listen", 1},  // a substitution
		{"nmae", "name", 1},      // a swap
		{"peers", "pers", 1},     //
		{"kitten", "sitting", 3}, // the classic
		{"endpiont", "endpoint", 1},
		{"ab", "ba", 1},
		{"ca", "abc", 3}, // OSA, not full Damerau: no edit of a swapped pair
	} {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := Distance(tc.b, tc.a); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d (symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"listen", "name", "peer", "protocol", "to", "privateKeyFile", "publicKey"}
	for _, tc := range []struct{ name, want string }{
		{"lisen", "listen"},
		{"nmae", "name"},
		{"Name", "name"},
		{"prot", ""}, // two edits from "peer" and from "port"-like names: too far for four bytes
		{"protcol", "protocol"},
		{"privatekeyfile", "privateKeyFile"},
		{"publickey", "publicKey"},
		{"pubKey", ""},
		{"xyz", ""},
		{"t", "to"},
		{"", ""},
	} {
		if got := Suggest(tc.name, known); got != tc.want {
			t.Errorf("Suggest(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}
