package kube

import (
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/tunnel-dev/tunnel/keys/store"
)

// RoleHint says what an operator lacks when the API server refuses them.
const RoleHint = "an operator running `tunnel keys rotate` needs the Role in manifests/base/rbac-rotate.yaml in this namespace (bound to them, or to the group tunnel-key-rotators)"

// explain wraps an API error with what was being done and, for the errors
// an operator can fix, how. Conflicts wrap store.ErrConflict as well, and
// absent Secrets store.ErrNotFound.
func explain(err error, where, doing string) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s: %s: %w; %s", where, doing, err, RoleHint)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s: %s: %w; the kubeconfig's credentials were not accepted (expired?)", where, doing, err)
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return fmt.Errorf("%s: %s: %w: %w", where, doing, store.ErrConflict, err)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s: %s: %w: %w", where, doing, store.ErrNotFound, err)
	}
	return fmt.Errorf("%s: %s: %w", where, doing, err)
}
