package tunnel_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// Two gateways in one process, on loopback: the server listens on its
// tunnel address, the client dials it through the tunnel. Neither needs a
// TUN device or any privilege.
func ExampleGateway() {
	serverKey, _ := keys.GeneratePrivateKey()
	clientKey, _ := keys.GeneratePrivateKey()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The server takes WireGuard on an ephemeral UDP port. The keys are
	// given as Gateway.PrivateKey, so the key file is never read.
	server := &tunnel.Gateway{PrivateKey: &serverKey}
	err := server.Start(ctx, mustConfig(fmt.Sprintf(`
interface: {name: server, privateKeyFile: unused, listenPort: 0, addresses: [10.99.0.1], uapiDir: "-"}
peers: [{name: client, publicKey: %s, allowedIPs: [10.99.0.2/32]}]
admin: {listen: "-"}
`, clientKey.Public())))
	if err != nil {
		log.Fatal(err)
	}
	defer server.Close()

	// The client dials the server's WireGuard port.
	client := &tunnel.Gateway{PrivateKey: &clientKey}
	err = client.Start(ctx, mustConfig(fmt.Sprintf(`
interface: {name: client, privateKeyFile: unused, addresses: [10.99.0.2], uapiDir: "-"}
peers: [{name: server, publicKey: %s, endpoint: "127.0.0.1:%d", allowedIPs: [10.99.0.1/32]}]
admin: {listen: "-"}
`, serverKey.Public(), server.ListenPort())))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	ln, err := server.Listen("tcp", ":7000")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		peer, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		fmt.Fprintf(c, "hello, %s", peer)
	}()

	c, err := client.Dial(ctx, "tcp", "10.99.0.1:7000")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(got))
	// Output: hello, 10.99.0.2
}

func mustConfig(yaml string) *config.Config {
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		log.Fatal(err)
	}
	return c
}
