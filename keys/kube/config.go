package kube

import (
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	// userAgent names us in the API server's audit log.
	userAgent = "tunnel-keys"
	// requestTimeout bounds each request, so an API server that stops
	// answering ends a step with an error instead of hanging it.
	requestTimeout = 30 * time.Second
)

// RESTConfig loads a kubeconfig context: from kubeconfig if set, else as
// kubectl does ($KUBECONFIG, then ~/.kube/config); context "" is the
// kubeconfig's current context.
func RESTConfig(kubeconfig, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		what := "the current kubeconfig context"
		if context != "" {
			what = fmt.Sprintf("kubeconfig context %q", context)
		}
		return nil, fmt.Errorf("loading %s: %w", what, err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = userAgent
	if cfg.Timeout == 0 {
		cfg.Timeout = requestTimeout
	}
	return cfg, nil
}

// Clients makes one clientset per kubeconfig context and keeps it, so that
// a store and a status in the same cluster share a connection.
type Clients struct {
	// Kubeconfig is the file to load; "" loads as kubectl does.
	Kubeconfig string

	mu   sync.Mutex
	sets map[string]rest.Interface
}

// For returns the clientset of a context ("" is the current one).
func (c *Clients) For(context string) (rest.Interface, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs, ok := c.sets[context]; ok {
		return cs, nil
	}
	cfg, err := RESTConfig(c.Kubeconfig, context)
	if err != nil {
		return nil, err
	}
	cs, err := coreClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("making a Kubernetes client: %w", err)
	}
	if c.sets == nil {
		c.sets = map[string]rest.Interface{}
	}
	c.sets[context] = cs
	return cs, nil
}

// coreClient is a REST client for the core API group (Secrets, Pods) that
// knows only core/v1's types: client-go's typed clients register every
// API group, which a gateway binary would carry for nothing.
func coreClient(cfg *rest.Config) (rest.Interface, error) {
	sch := runtime.NewScheme()
	if err := corev1.AddToScheme(sch); err != nil {
		return nil, err
	}
	c := rest.CopyConfig(cfg)
	c.APIPath = "/api"
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.NegotiatedSerializer = serializer.NewCodecFactory(sch).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return rest.RESTClientFor(c)
}
