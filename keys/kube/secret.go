package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/tunnel-dev/tunnel/keys/store"
)

// fieldManager names our writes in managedFields.
const fieldManager = "tunnel-keys"

// Secret is a key store kept in one Kubernetes Secret: each item is a key
// of its data. Its Version is the Secret's resourceVersion; a write is a
// JSON merge patch carrying that resourceVersion, which the API server
// refuses with 409 Conflict if the Secret changed since.
type Secret struct {
	client    rest.Interface
	namespace string
	name      string
	addr      string
}

// NewSecret returns the store in Secret namespace/name; addr is how
// messages name it (its store address).
func NewSecret(client rest.Interface, namespace, name, addr string) *Secret {
	if addr == "" {
		addr = store.Address{Kind: store.KindSecret, Namespace: namespace, Name: name}.String()
	}
	return &Secret{client: client, namespace: namespace, name: name, addr: addr}
}

// String is the store's address.
func (s *Secret) String() string { return s.addr }

// Load gets the Secret.
func (s *Secret) Load(ctx context.Context) (store.Snapshot, error) {
	var sec corev1.Secret
	if err := s.client.Get().Namespace(s.namespace).Resource("secrets").Name(s.name).Do(ctx).Into(&sec); err != nil {
		return store.Snapshot{}, explain(err, s.addr, "reading the Secret")
	}
	return snapshot(&sec), nil
}

func snapshot(sec *corev1.Secret) store.Snapshot {
	items := make(map[string][]byte, len(sec.Data))
	for k, v := range sec.Data {
		items[k] = slices.Clone(v)
	}
	return store.Snapshot{Items: items, Version: store.Version(sec.ResourceVersion)}
}

// Write patches the Secret if its resourceVersion is still base; the
// empty base creates it.
func (s *Secret) Write(ctx context.Context, base store.Version, ch store.Change) (store.Snapshot, error) {
	if err := ch.Validate(); err != nil {
		return store.Snapshot{}, fmt.Errorf("%s: writing: %w", s.addr, err)
	}
	if base == "" {
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.namespace},
			Type:       corev1.SecretTypeOpaque,
			Data:       ch.Apply(nil),
		}
		var out corev1.Secret
		err := s.client.Post().Namespace(s.namespace).Resource("secrets").Param("fieldManager", fieldManager).
			Body(sec).Do(ctx).Into(&out)
		if err != nil {
			return store.Snapshot{}, explain(err, s.addr, "creating the Secret")
		}
		return snapshot(&out), nil
	}
	data := map[string]any{}
	for k, v := range ch.Set {
		if v == nil {
			v = []byte{} // a nil []byte would encode as null: a deletion
		}
		data[k] = v // encoding/json writes []byte as base64, as data wants
	}
	for _, k := range ch.Delete {
		data[k] = nil
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": string(base)},
		"data":     data,
	})
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("%s: encoding the patch: %w", s.addr, err)
	}
	var out corev1.Secret
	err = s.client.Patch(types.MergePatchType).Namespace(s.namespace).Resource("secrets").Name(s.name).
		Param("fieldManager", fieldManager).Body(patch).Do(ctx).Into(&out)
	if err != nil {
		return store.Snapshot{}, explain(err, s.addr, "patching the Secret ("+ch.Describe()+")")
	}
	return snapshot(&out), nil
}

// Update reads, changes and patches the Secret, retrying on 409 Conflict
// with client-go's retry.RetryOnConflict.
func (s *Secret) Update(ctx context.Context, change func(store.Snapshot) (store.Change, error)) (store.Snapshot, error) {
	var out store.Snapshot
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		snap, err := s.Load(ctx)
		if err != nil {
			return err
		}
		ch, err := change(snap)
		if err != nil {
			return err
		}
		if ch.Empty() {
			out = snap
			return nil
		}
		out, err = s.Write(ctx, snap.Version, ch)
		return err
	})
	if err != nil && errors.Is(err, store.ErrConflict) {
		return store.Snapshot{}, fmt.Errorf("%s: gave up after repeated conflicts with other writers: %w", s.addr, err)
	}
	return out, err
}
