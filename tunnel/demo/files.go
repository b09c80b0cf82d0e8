package demo

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/producers"
)

// setup is the demo's files and addresses.
type setup struct {
	dir string

	relayQUIC, relayHTTP string // relay's own addresses
	relayAdmin           string // relay's /metrics, /healthz, /readyz
	token                string // the demo's producer token (demo.token)
	aksWG                string // the AKS gateway's WireGuard port
	aksForward           string // where bunny reaches relay: the AKS gateway's forward
	probeTCP, probeUDP   string // forwards to what eks does not expose
	eksAdmin, aksAdmin   string
	bunnyAdmin           string
	handler              string // the demo's job handler (bunny's http handler target)
	concurrency          int    // bunny's job slots

	eksPub, aksPub keys.PublicKey
	relayPin       keys.Pin
	bunnyPin       keys.Pin

	ha *haSetup // the --ha demo's four gateways; nil for one pair
}

// Tunnel addresses, as in docs/examples.
const (
	eksTunnel = "10.99.0.1"
	aksTunnel = "10.99.0.2"
	otherAddr = "10.99.0.3" // a peer address nothing listens on
	relayPort = 7443        // the one port eks exposes
	queue     = "demo"
)

func (s *setup) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// write generates keys and identities and writes every config file, as a
// user would with `tunnel keys`.
func (s *setup) write() error {
	var err error
	for _, a := range []*string{&s.relayHTTP, &s.relayAdmin, &s.eksAdmin, &s.aksAdmin, &s.bunnyAdmin, &s.probeTCP} {
		if *a, err = freeTCP(); err != nil {
			return err
		}
	}
	for _, a := range []*string{&s.relayQUIC, &s.aksWG, &s.aksForward, &s.probeUDP} {
		if *a, err = freeUDP(); err != nil {
			return err
		}
	}
	if s.eksPub, err = keys.WriteKeyPair(s.path("eks-keys"), false); err != nil {
		return fmt.Errorf("generating the eks gateway's key: %w", err)
	}
	if s.aksPub, err = keys.WriteKeyPair(s.path("aks-keys"), false); err != nil {
		return fmt.Errorf("generating the aks gateway's key: %w", err)
	}
	if err := s.writeIdentities(); err != nil {
		return err
	}
	files := map[string]string{
		"workers.yaml": s.workersYAML(),
		// The EKS side dials out: no listen port, nothing inbound.
		"eks.yaml": fmt.Sprintf(`# The EKS-side gateway: exposes relay's QUIC port to peer aks only, and dials out.
interface:
  name: eks
  privateKeyFile: %s
  addresses: [%s]
peers:
  - name: aks
    publicKey: %s
    endpoint: %s
    persistentKeepalive: 25s
    allowedIPs: [%s/32]
expose:
  - name: relay
    protocol: udp
    port: %d
    target: %s
    peers: [aks]
admin:
  listen: %s
`, s.path("eks-keys", keys.PrivateKeyFile), eksTunnel, s.aksPub, s.aksWG, aksTunnel, relayPort, s.relayQUIC, s.eksAdmin),
		"aks.yaml": fmt.Sprintf(`# The AKS-side gateway: listens for WireGuard, forwards a local port to relay through the tunnel.
interface:
  name: aks
  privateKeyFile: %s
  listenPort: %s
  addresses: [%s]
peers:
  - name: eks
    publicKey: %s
    allowedIPs: [%s/32, %s/32]
forward:
  - name: relay
    protocol: udp
    listen: %s
    peer: eks
    to: %s:%d
  # The demo's scope check only: what eks does not expose.
  - name: probe-relay-api
    protocol: tcp
    listen: %s
    peer: eks
    to: %s:8080
  - name: probe-other-address
    protocol: udp
    listen: %s
    peer: eks
    to: %s:%d
limits:
  tcpDialTimeout: 2s
admin:
  listen: %s
`, s.path("aks-keys", keys.PrivateKeyFile), portOf(s.aksWG), aksTunnel, s.eksPub, eksTunnel, otherAddr,
			s.aksForward, eksTunnel, relayPort, s.probeTCP, eksTunnel, s.probeUDP, otherAddr, relayPort, s.aksAdmin),
		"bunny.yaml": s.bunnyYAML("leases jobs from relay through the aks gateway's forward port", s.aksForward),
	}
	for name, body := range files {
		if err := os.WriteFile(s.path(name), []byte(body), 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

// writeIdentities makes relay's and bunny's QUIC identities and the
// demo's producer token.
func (s *setup) writeIdentities() error {
	var err error
	if s.relayPin, err = keys.WriteIdentity(s.path("relay-id"), "relay", false); err != nil {
		return fmt.Errorf("generating relay's identity: %w", err)
	}
	if s.bunnyPin, err = keys.WriteIdentity(s.path("bunny-id"), "bunny-demo", false); err != nil {
		return fmt.Errorf("generating bunny's identity: %w", err)
	}
	// The demo is a producer like any other: a token of its own, whose
	// hash alone goes in relay's producers file.
	if s.token, err = producers.NewFile(s.path("producers.yaml"), "demo", queue); err != nil {
		return err
	}
	return nil
}

// workersYAML is relay's workers file: bunny's identity may work the
// demo's queue.
func (s *setup) workersYAML() string {
	return fmt.Sprintf(`# relay's workers file: which worker identity may do what on which queue.
workers:
  - name: bunny-demo
    pins: [%s]
    queues:
      %s: [lease, heartbeat, complete, fail]
`, s.bunnyPin, queue)
}

// bunnyYAML is bunny's config, reaching relay at address (one host:port
// or a YAML list of them).
func (s *setup) bunnyYAML(what, address string) string {
	return fmt.Sprintf(`# bunny: %s.
relay:
  address: %s
  pin: %s
identity:
  certFile: %s
  keyFile: %s
admin:
  listen: %s
concurrency: %d
shutdownGrace: 10s
queues:
  - name: %s
    http:
      url: %s
      timeout: 30s
`, what, address, s.relayPin, s.path("bunny-id", keys.IdentityCertFile), s.path("bunny-id", keys.IdentityKeyFile), s.bunnyAdmin, s.concurrency, queue, s.handler)
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i+1:]
		}
	}
	return addr
}

// relayDirect is the aks gateway's config with one more forward rule,
// straight to relay's own address: the config check must refuse it, as
// the tunnel carries only to the peer's tunnel addresses.
func (s *setup) relayDirect() string {
	return fmt.Sprintf(`interface:
  privateKeyFile: %s
  addresses: [%s]
peers:
  - name: eks
    publicKey: %s
    allowedIPs: [%s/32]
forward:
  - name: relay-direct
    protocol: udp
    listen: 127.0.0.1:0
    peer: eks
    to: %s
`, s.path("aks-keys", keys.PrivateKeyFile), aksTunnel, s.eksPub, eksTunnel, s.relayQUIC)
}
