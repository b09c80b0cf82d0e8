// Package store keeps the items of one gateway's key store — its private
// key, a staged next key during a rotation, and its peers' public key
// files — and changes them only by compare-and-swap.
//
// A store is a flat set of named items, as a Kubernetes Secret is. Two kinds
// exist: [Dir], a directory of files (including a mounted Secret's layout,
// with kubelet's ..data symlink), and the Secret store of package
// keys/kube. Every write names the [Version] it was computed from and fails
// with [ErrConflict] if the store changed since; [Update] reads, changes and
// retries.
//
// Private keys pass through a store as bytes and leave it only into files
// of mode 0600 or into a Secret: no error, log line or String form of
// anything here contains an item's contents.
package store
