package keys

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"eks", true},
		{"gw-2", true},
		{"0", true},
		{strings.Repeat("a", 63), true},
		{"", false},
		{strings.Repeat("a", 64), false},
		{"-a", false},
		{"a-", false},
		{"Aks", false},
		{"a_b", false},
		{"a.b", false},
		{"a b", false},
	} {
		if got := ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestPeerOfKeyFile(t *testing.T) {
	if got, ok := PeerOfKeyFile(PeerKeyFile("eks")); !ok || got != "eks" {
		t.Fatalf("round trip: %q %v", got, ok)
	}
	for _, bad := range []string{"eks.pub", "peer.eks", "peer..pub", "peer.EKS.pub", "private.key"} {
		if _, ok := PeerOfKeyFile(bad); ok {
			t.Errorf("%q taken for a peer key file", bad)
		}
	}
}

func TestParsePeerKeys(t *testing.T) {
	k1, k2, k3 := "6B0U4PKrk3dBsB+mr5Pe2gqlyBWLj0Nqsmdq8kN3OyU=", "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "qQ4nHx1RJwUg+hI0k5tbdC6HMkiOZ3R3ceVIw0qtGnk="
	for _, tc := range []struct {
		name, in  string
		active    string
		next      string // "" for none
		errSubstr string // non-empty: must fail with this
	}{
		{"one", k1 + "\n", k1, "", ""},
		{"no newline", k1, k1, "", ""},
		{"two", k1 + "\n" + k2 + "\n", k1, k2, ""},
		{"comments and blanks", "# rotating\n\n  " + k1 + "  \n#x\n" + k2 + "\n", k1, k2, ""},
		{"three", k1 + "\n" + k2 + "\n" + k3 + "\n", "", "", "3 keys"},
		{"the same twice", k1 + "\n" + k1 + "\n", "", "", "line 2: the same key twice"},
		{"empty", "", "", "", "no key in the file"},
		{"comment only", "# nothing\n", "", "", "no key in the file"},
		{"not a key", "# c\nAAAA\n", "", "", "line 2: "},
		{"weak", strings.Repeat("A", 43) + "=\n", "", "", "weak key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, n, err := ParsePeerKeys([]byte(tc.in))
			if tc.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSubstr) {
					t.Fatalf("err %v, want %q", err, tc.errSubstr)
				}
				return
			}
			if err != nil || a.String() != tc.active {
				t.Fatalf("active %s %v, want %s", a, err, tc.active)
			}
			switch {
			case tc.next == "" && n != nil:
				t.Fatalf("next %s, want none", n)
			case tc.next != "" && (n == nil || n.String() != tc.next):
				t.Fatalf("next %v, want %s", n, tc.next)
			}
		})
	}
}

// What FormatPeerKeys writes, ParsePeerKeys reads back.
func TestPeerKeysRoundTrip(t *testing.T) {
	a, _ := GeneratePrivateKey()
	b, _ := GeneratePrivateKey()
	got, next, err := ParsePeerKeys(FormatPeerKeys(a.Public(), b.Public()))
	if err != nil || got != a.Public() || next == nil || *next != b.Public() {
		t.Fatalf("%s %v %v", got, next, err)
	}
	got, next, err = ParsePeerKeys(FormatPeerKeys(a.Public()))
	if err != nil || got != a.Public() || next != nil {
		t.Fatalf("%s %v %v", got, next, err)
	}
}

func FuzzParsePeerKeys(f *testing.F) {
	f.Add([]byte("6B0U4PKrk3dBsB+mr5Pe2gqlyBWLj0Nqsmdq8kN3OyU=\n"))
	f.Add([]byte("# x\n\nxTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n6B0U4PKrk3dBsB+mr5Pe2gqlyBWLj0Nqsmdq8kN3OyU="))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, next, err := ParsePeerKeys(b)
		if err == nil && (k.IsZero() || (next != nil && *next == k)) {
			t.Fatal("accepted a zero or repeated key")
		}
		if err != nil {
			return
		}
		// What it accepts, it reads back the same once formatted.
		ks := []PublicKey{k}
		if next != nil {
			ks = append(ks, *next)
		}
		k2, next2, err := ParsePeerKeys(FormatPeerKeys(ks...))
		if err != nil || k2 != k || (next == nil) != (next2 == nil) || next != nil && *next2 != *next {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzValidName(f *testing.F) {
	f.Add("eks")
	f.Add("a-")
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidName(s) {
			return
		}
		if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			t.Fatalf("accepted %q", s)
		}
	})
}
