package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/tunnel-dev/tunnel/bunny/config"
	"github.com/tunnel-dev/tunnel/bunny/handler"
	"github.com/tunnel-dev/tunnel/internal/cli"
)

type handlerCmd struct {
	Echo handlerEchoCmd `cmd:"" envprefix:"ECHO_" help:"Serve the echo job handler over HTTP: each job's payload comes back as its result (a smoke test that needs no handler of your own)."`
}

type handlerEchoCmd struct {
	Listen string `default:"127.0.0.1:8081" placeholder:"ADDR" help:"TCP address to serve on; point a queue's http.url at http://ADDR/run."`
	cli.Logging
}

func (c *handlerEchoCmd) Run(ctx context.Context, env cli.Env) error {
	log := c.Logger(env.Stderr)
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return cli.Usage(fmt.Errorf("--listen %s: %w", c.Listen, err))
	}
	srv := &http.Server{Handler: handler.Echo(config.MaxOutputLimit), ReadHeaderTimeout: 10 * time.Second}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("echo handler listening", "addr", ln.Addr().String(), "url", "http://"+ln.Addr().String()+"/run")
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the echo handler: %w", err)
	}
	<-stopped
	log.Info("stopped")
	return nil
}
