package kube_test

import (
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/keys/kube"
)

func TestParsePodAddress(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want kube.PodAddress
	}{
		{"pod:tunnel/app=gw", kube.PodAddress{Namespace: "tunnel", Selector: "app=gw", Port: 9090}},
		{"pod:tunnel/app=gw:9091", kube.PodAddress{Namespace: "tunnel", Selector: "app=gw", Port: 9091}},
		{"pod:aks/tunnel/app.kubernetes.io/name=tunnel-gateway", kube.PodAddress{Context: "aks", Namespace: "tunnel", Selector: "app.kubernetes.io/name=tunnel-gateway", Port: 9090}},
		{"pod:arn:aws:eks:eu-west-1:1234:cluster/relay/tunnel/app=gw,tier in (edge):8080",
			kube.PodAddress{Context: "arn:aws:eks:eu-west-1:1234:cluster/relay", Namespace: "tunnel", Selector: "app=gw,tier in (edge)", Port: 8080}},
		{"pod:tunnel/gateway", kube.PodAddress{Namespace: "tunnel", Selector: "gateway", Port: 9090}},
	} {
		got, err := kube.ParsePodAddress(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v %v, want %+v", tc.in, got, err, tc.want)
			continue
		}
		if again, err := kube.ParsePodAddress(got.String()); err != nil || again != got {
			t.Errorf("%q does not round-trip: %q -> %+v %v", tc.in, got.String(), again, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"tunnel/app=gw", "want pod:"},
		{"pod:", "no NAMESPACE/LABEL-SELECTOR"},
		{"pod:app=gw", "no NAMESPACE/LABEL-SELECTOR"},
		{"pod:tunnel/", "no NAMESPACE/LABEL-SELECTOR"},
		{"pod:Tunnel/app=gw", "no NAMESPACE/LABEL-SELECTOR"},
		{"pod:tunnel/app=gw:", "not a port"},
		{"pod:tunnel/app=gw:0", "not a port"},
		{"pod:tunnel/app=gw:65536", "not a port"},
		{"pod:tunnel/app=gw:+80", "not a port"},
		{"pod:tunnel/=gw", "no NAMESPACE/LABEL-SELECTOR"},
		{"pod:tunnel/app in (", "no NAMESPACE/LABEL-SELECTOR"},
		{"pod:my ctx/tunnel/app=gw", "context"},
	} {
		if _, err := kube.ParsePodAddress(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParsePodAddress(f *testing.F) {
	for _, s := range []string{"pod:tunnel/app=gw:9090", "pod:ctx/ns/a.b/c=d", "pod:arn:aws:eks:x:1:cluster/c/ns/app in (a,b):1", "pod:/", "pod::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := kube.ParsePodAddress(s)
		if err != nil {
			return
		}
		if a.Port < 1 || a.Port > 65535 || a.Namespace == "" || a.Selector == "" {
			t.Fatalf("%q: accepted %+v", s, a)
		}
		again, err := kube.ParsePodAddress(a.String())
		if err != nil || again != a {
			t.Fatalf("%q parsed to %+v; its String %q parses to %+v (%v)", s, a, a.String(), again, err)
		}
	})
}
