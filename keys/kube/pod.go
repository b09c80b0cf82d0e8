package kube

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"

	"github.com/tunnel-dev/tunnel/keys/rotate"
	"github.com/tunnel-dev/tunnel/keys/store"
)

// DefaultAdminPort is the gateway pod's admin port (admin.listen
// 0.0.0.0:9090 in the manifests).
const DefaultAdminPort = 9090

// PodAddress names a gateway's pods, whose /status is read through the API
// server's pod proxy: pod:[CONTEXT/]NAMESPACE/SELECTOR[:PORT].
type PodAddress struct {
	Context   string // "" is the kubeconfig's current context
	Namespace string
	Selector  string // a label selector, such as app.kubernetes.io/name=tunnel-gateway
	Port      int
}

const podForms = "want pod:[CONTEXT/]NAMESPACE/LABEL-SELECTOR[:PORT], such as pod:tunnel/app=tunnel-gateway:9090"

// ParsePodAddress parses a pod address. Both a context (an EKS cluster
// ARN) and a selector (a prefixed label key, app.kubernetes.io/name) may
// hold '/': the namespace is the last segment that is a valid namespace
// and is followed by a valid selector. A selector never holds ':', so a
// trailing ":digits" is the port.
func ParsePodAddress(s string) (PodAddress, error) {
	rest, ok := strings.CutPrefix(s, "pod:")
	if !ok {
		return PodAddress{}, fmt.Errorf("status address %q: %s", abbreviate(s), podForms)
	}
	a := PodAddress{Port: DefaultAdminPort}
	if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
		port, err := parsePort(rest[i+1:])
		if err != nil {
			return PodAddress{}, fmt.Errorf("status address %q: port %q is not a port number (1-65535); %s", abbreviate(s), abbreviate(rest[i+1:]), podForms)
		}
		a.Port, rest = port, rest[:i]
	}
	segs := strings.Split(rest, "/")
	for i := len(segs) - 2; i >= 0; i-- {
		if !store.ValidNamespace(segs[i]) {
			continue
		}
		sel := strings.Join(segs[i+1:], "/")
		if _, err := labels.Parse(sel); err != nil || strings.TrimSpace(sel) == "" {
			continue
		}
		a.Namespace, a.Selector = segs[i], sel
		if i > 0 {
			a.Context = strings.Join(segs[:i], "/")
			if !store.ValidContext(a.Context) {
				return PodAddress{}, fmt.Errorf("status address %q: context %q is empty or holds spaces or control characters; %s", abbreviate(s), abbreviate(a.Context), podForms)
			}
		}
		return a, nil
	}
	return PodAddress{}, fmt.Errorf("status address %q: no NAMESPACE/LABEL-SELECTOR in it; %s", abbreviate(s), podForms)
}

// parsePort parses 1-5 decimal digits, 1-65535.
func parsePort(s string) (int, error) {
	if len(s) == 0 || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a port")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("not a port")
	}
	return n, nil
}

// String is the address in the form ParsePodAddress reads.
func (a PodAddress) String() string {
	s := "pod:"
	if a.Context != "" {
		s += a.Context + "/"
	}
	return s + a.Namespace + "/" + a.Selector + ":" + strconv.Itoa(a.Port)
}

// PodStatus reads the /status of every running pod a selector matches,
// through the API server's pod proxy (GET pods/proxy), so no port-forward
// is needed and nothing but the API server is reached from outside the
// cluster.
type PodStatus struct {
	client rest.Interface
	addr   PodAddress
}

var _ rotate.StatusSource = (*PodStatus)(nil)

// NewPodStatus returns the status source of the pods at addr.
func NewPodStatus(client rest.Interface, addr PodAddress) *PodStatus {
	return &PodStatus{client: client, addr: addr}
}

func (p *PodStatus) String() string { return p.addr.String() }

// Statuses reads each running pod's status. A matching pod that is not
// running (pending, terminating) is skipped; none running is an error.
func (p *PodStatus) Statuses(ctx context.Context) ([]rotate.GatewayStatus, error) {
	var list corev1.PodList
	err := p.client.Get().Namespace(p.addr.Namespace).Resource("pods").Param("labelSelector", p.addr.Selector).Do(ctx).Into(&list)
	if err != nil {
		return nil, explain(err, p.addr.String(), "listing the gateway's pods")
	}
	var out []rotate.GatewayStatus
	for _, pod := range list.Items {
		if !running(&pod) {
			continue
		}
		body, err := p.client.Get().Namespace(p.addr.Namespace).Resource("pods").
			Name(utilnet.JoinSchemeNamePort("http", pod.Name, strconv.Itoa(p.addr.Port))).SubResource("proxy").Suffix("status").DoRaw(ctx)
		if err != nil {
			return nil, explain(err, p.addr.String(), "reading pod "+pod.Name+"'s /status through the API server's pod proxy")
		}
		st, err := rotate.DecodeStatus(strings.NewReader(string(body)))
		if err != nil {
			return nil, fmt.Errorf("%s: pod %s: %w", p.addr, pod.Name, err)
		}
		out = append(out, st)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no running pod matches (of %d matching pods): is the gateway up, and is the selector right?", p.addr, len(list.Items))
	}
	return out, nil
}

func running(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp == nil && pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != ""
}

func abbreviate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
