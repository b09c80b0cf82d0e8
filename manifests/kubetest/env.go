package kubetest

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// Env is a running etcd and kube-apiserver. Its methods are safe for
// concurrent use.
type Env struct {
	dir       string // temp dir: certs, etcd data, logs; removed by Stop
	host      string // https://127.0.0.1:port
	ca        *authority
	admin     *rest.Config
	etcd      *process
	apiserver *process
}

const (
	// startTimeout bounds a start on a loaded 2-core machine (it takes 5-7 s).
	startTimeout = 2 * time.Minute
	// apiserverGrace and etcdGrace bound each graceful stop before SIGKILL.
	apiserverGrace = 15 * time.Second
	etcdGrace      = 10 * time.Second
	// startAttempts bounds retries when a free port was taken between
	// picking it and the server binding it.
	startAttempts = 3
)

// New starts etcd and kube-apiserver from the binaries in [AssetsDir] and
// returns once the apiserver's /readyz reports ok. The caller must call
// [Env.Stop]; tests use [Start] or [Shared], which do. ctx bounds the start
// only. When the binaries are missing the error wraps [ErrAssetsMissing].
func New(ctx context.Context) (*Env, error) {
	a, err := findAssets()
	if err != nil {
		return nil, err
	}
	var errs []error
	for range startAttempts {
		e, err := start(ctx, a)
		if err == nil {
			return e, nil
		}
		errs = append(errs, err)
		if !errors.Is(err, errPortTaken) || ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

var errPortTaken = errors.New("a port picked as free was taken")

func start(ctx context.Context, a assets) (_ *Env, err error) {
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, fmt.Errorf("creating the kubetest directory: %w", err)
	}
	e := &Env{dir: dir}
	defer func() {
		if err != nil {
			if serr := e.Stop(); serr != nil {
				err = errors.Join(err, serr)
			}
		}
	}()

	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	e.host = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort))

	if err := e.writeCerts(); err != nil {
		return nil, err
	}

	etcdURL := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(etcdClient))
	peerURL := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(etcdPeer))
	e.etcd, err = startProcess("etcd", filepath.Join(dir, "etcd.log"), a.etcd,
		"--name=kubetest",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--unsafe-no-fsync", // the data is thrown away; fsync only slows tests
		"--log-level=warn",
	)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, e.etcd, http.DefaultClient, etcdURL+"/health", `"health":"true"`); err != nil {
		return nil, err
	}

	e.apiserver, err = startProcess("kube-apiserver", filepath.Join(dir, "kube-apiserver.log"), a.apiserver,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		// The default reconciler refuses a loopback advertise address; there is
		// no kubernetes Service endpoint to keep anyway.
		"--endpoint-reconciler-type=none",
		"--tls-cert-file="+filepath.Join(dir, "serving.crt"),
		"--tls-private-key-file="+filepath.Join(dir, "serving.key"),
		"--client-ca-file="+filepath.Join(dir, "ca.crt"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		// No controller-manager creates the "default" ServiceAccount, which this
		// plugin would demand of every pod.
		"--disable-admission-plugins=ServiceAccount",
		// As real clusters: Pod Security admission, not this flag, judges
		// privileged pods.
		"--allow-privileged=true",
		"--profiling=false",
	)
	if err != nil {
		return nil, err
	}
	hc, err := rest.HTTPClientFor(e.admin)
	if err != nil {
		return nil, fmt.Errorf("making an HTTP client for the apiserver: %w", err)
	}
	if err := waitFor(ctx, e.apiserver, hc, e.host+"/readyz", "ok"); err != nil {
		return nil, err
	}
	return e, nil
}

// writeCerts makes the CA, the apiserver's serving certificate, the service
// account signing key and the admin config.
func (e *Env) writeCerts() error {
	ca, err := newAuthority()
	if err != nil {
		return err
	}
	e.ca = ca
	servingCert, servingKey, err := ca.issue(pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth,
		[]net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"})
	if err != nil {
		return err
	}
	saKey, err := newKey()
	if err != nil {
		return err
	}
	saPEM, err := keyPEM(saKey)
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"ca.crt":      ca.certPEM,
		"serving.crt": servingCert,
		"serving.key": servingKey,
		"sa.key":      saPEM,
	} {
		if err := os.WriteFile(filepath.Join(e.dir, name), data, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	e.admin, err = e.UserConfig("kubetest-admin", "system:masters")
	return err
}

// AdminConfig returns a new config for a cluster admin (group
// system:masters, which RBAC lets do anything).
func (e *Env) AdminConfig() *rest.Config {
	return rest.CopyConfig(e.admin)
}

// Host returns the apiserver's URL, https://127.0.0.1:<port>.
func (e *Env) Host() string { return e.host }

// UserConfig returns a config that authenticates as user, in groups (and, as
// every authenticated user, system:authenticated), by a client certificate
// the apiserver trusts. Nothing binds the user to any role: it may do only
// what RBAC's defaults let every authenticated user do (discovery, reviews of
// itself) until a test binds it to more.
func (e *Env) UserConfig(user string, groups ...string) (*rest.Config, error) {
	if user == "" {
		return nil, errors.New("making a user config: empty user name")
	}
	cert, key, err := e.ca.issue(pkix.Name{CommonName: user, Organization: groups}, x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("making a client certificate for user %q: %w", user, err)
	}
	return &rest.Config{
		Host: e.host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   e.ca.certPEM,
			CertData: cert,
			KeyData:  key,
		},
		// Tests make bursts of requests; client-go's default 5 QPS would
		// throttle them.
		QPS:   -1,
		Burst: -1,
	}, nil
}

// Stop stops the apiserver, then etcd, and removes the temp directory. It is
// safe to call more than once and on a partly started Env.
func (e *Env) Stop() error {
	if e == nil {
		return nil
	}
	var errs []error
	// The apiserver first: its graceful shutdown waits on etcd.
	if err := e.apiserver.stop(apiserverGrace); err != nil {
		errs = append(errs, err)
	}
	if err := e.etcd.stop(etcdGrace); err != nil {
		errs = append(errs, err)
	}
	if e.dir != "" {
		if err := os.RemoveAll(e.dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", e.dir, err))
		}
	}
	return errors.Join(errs...)
}

// Logs returns the last kilobytes of the apiserver's and etcd's logs, for a
// failing test to print.
func (e *Env) Logs() string {
	var b strings.Builder
	for _, p := range []*process{e.apiserver, e.etcd} {
		if p != nil {
			fmt.Fprintf(&b, "--- %s log (tail) ---\n%s\n", p.name, p.logTail(8<<10))
		}
	}
	return b.String()
}

// freePorts returns n distinct loopback TCP ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free loopback port: %w", err)
		}
		// Held open until all are picked, so none is picked twice.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitFor polls url until its body contains want, the process exits, or ctx
// ends.
func waitFor(ctx context.Context, p *process, hc *http.Client, url, want string) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		if ok, werr := p.exited(); ok {
			tail := p.logTail(4 << 10)
			err := fmt.Errorf("%s exited while starting (%v); log tail:\n%s", p.name, werr, tail)
			if strings.Contains(tail, "address already in use") {
				err = fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return err
		}
		body, err := get(ctx, hc, url)
		if err == nil && strings.Contains(body, want) {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = body
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s at %s: %w (last answer: %s); log tail:\n%s",
				p.name, url, ctx.Err(), last, p.logTail(4<<10))
		case <-tick.C:
		}
	}
}

func get(ctx context.Context, hc *http.Client, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}
