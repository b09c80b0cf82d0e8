package store

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"

	"github.com/tunnel-dev/tunnel/keys"
)

// Kinds of store address.
const (
	KindDir    = "dir"
	KindSecret = "secret"
)

// Address names a key store on the command line:
//
//	dir:/etc/tunnel/keys                 a directory (Dir)
//	secret:NAMESPACE/NAME                a Secret, in the kubeconfig's current context
//	secret:CONTEXT/NAMESPACE/NAME        a Secret, in the named kubeconfig context
//
// A context may itself hold '/' and ':' (EKS names contexts by cluster
// ARN): the namespace and the name are the last two segments.
type Address struct {
	Kind      string
	Path      string // dir
	Context   string // secret; "" is the kubeconfig's current context
	Namespace string // secret
	Name      string // secret
}

// dnsSubdomainRE is a Secret's name: an RFC 1123 subdomain.
var dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// ValidNamespace reports whether s can be a Kubernetes namespace: an
// RFC 1123 label.
func ValidNamespace(s string) bool { return keys.ValidName(s) }

// ValidObjectName reports whether s can name a Secret (or a Pod).
func ValidObjectName(s string) bool { return len(s) <= 253 && dnsSubdomainRE.MatchString(s) }

// ValidContext reports whether s can be a kubeconfig context name here:
// non-empty, printable, without spaces.
func ValidContext(s string) bool {
	if s == "" || len(s) > 1024 {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

const addressForms = "want dir:PATH or secret:[CONTEXT/]NAMESPACE/NAME"

// ParseAddress parses a store address.
func ParseAddress(s string) (Address, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Address{}, fmt.Errorf("store address %q: no kind; %s", abbreviate(s), addressForms)
	}
	switch kind {
	case KindDir:
		if rest == "" {
			return Address{}, fmt.Errorf("store address %q: empty path; %s", abbreviate(s), addressForms)
		}
		if strings.ContainsRune(rest, 0) {
			return Address{}, fmt.Errorf("store address %q: the path holds a NUL byte", abbreviate(s))
		}
		return Address{Kind: KindDir, Path: filepath.Clean(rest)}, nil
	case KindSecret:
		segs := strings.Split(rest, "/")
		if len(segs) < 2 {
			return Address{}, fmt.Errorf("store address %q: %s", abbreviate(s), addressForms)
		}
		a := Address{Kind: KindSecret, Namespace: segs[len(segs)-2], Name: segs[len(segs)-1]}
		if len(segs) > 2 {
			a.Context = strings.Join(segs[:len(segs)-2], "/")
			if !ValidContext(a.Context) {
				return Address{}, fmt.Errorf("store address %q: context %q is empty or holds spaces or control characters; %s", abbreviate(s), abbreviate(a.Context), addressForms)
			}
		}
		if !ValidNamespace(a.Namespace) {
			return Address{}, fmt.Errorf("store address %q: %q is not a namespace (lowercase letters, digits and '-', up to 63); %s", abbreviate(s), abbreviate(a.Namespace), addressForms)
		}
		if !ValidObjectName(a.Name) {
			return Address{}, fmt.Errorf("store address %q: %q is not a Secret name (lowercase letters, digits, '-' and '.'); %s", abbreviate(s), abbreviate(a.Name), addressForms)
		}
		return a, nil
	default:
		return Address{}, fmt.Errorf("store address %q: unknown kind %q; %s", abbreviate(s), abbreviate(kind), addressForms)
	}
}

// String is the address in the form ParseAddress reads.
func (a Address) String() string {
	switch a.Kind {
	case KindDir:
		return KindDir + ":" + a.Path
	case KindSecret:
		if a.Context != "" {
			return KindSecret + ":" + a.Context + "/" + a.Namespace + "/" + a.Name
		}
		return KindSecret + ":" + a.Namespace + "/" + a.Name
	}
	return ""
}

// abbreviate keeps an echoed argument short.
func abbreviate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
