// Package kube is the Kubernetes side of key rotation: a key store kept in
// a Secret through the API server (client-go), and a gateway's /status
// read through the API server's pod proxy, each in a kubeconfig context of
// its own, so that one operator can rotate both clusters from one command.
//
// An operator needs, in each gateway's namespace, the Role that
// manifests/base/rbac-rotate.yaml ships: get, update and patch on the
// gateway's Secret, get and list on pods, and get on pods/proxy. Without it
// the API server answers 403, and the errors here say which Role is
// missing.
package kube
