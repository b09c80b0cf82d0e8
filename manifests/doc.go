// Package manifests holds no code: its tests prove the kustomize overlays
// in this directory (base, eks, aks, alt/eks-listens, alt/aks-dials).
//
// Offline, every overlay is built with sigs.k8s.io/kustomize/api and every
// object decoded strictly into its k8s.io/api type; the pod templates are
// held to Pod Security "restricted" and more; the gateway configs in the
// ConfigMaps pass the gateway's own checks and pair up across clusters;
// the NetworkPolicies allow exactly the ports the mounted configs use.
// Against a real kube-apiserver (manifests/kubetest), every overlay is
// server-side applied into namespaces that enforce "restricted", and each
// pod template is submitted as a Pod (dry run) for Pod Security admission
// to judge. docs/deploy.md is the rollout these manifests serve.
package manifests
