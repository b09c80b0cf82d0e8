// Package kubelet lays out a directory the way kubelet's atomic writer
// updates a mounted Secret volume. It is written from kubelet's
// description, independently of keys/store.Dir, so that tests of the store
// and of the gateway's file watcher read a layout the store did not make.
package kubelet
