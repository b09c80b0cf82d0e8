package config

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Describe writes, in plain words, what bunny will do with c.
func (c *Config) Describe(w io.Writer) {
	pin := c.Relay.Pin.String()
	if c.Relay.PinFile != "" {
		pin += " (from " + c.Relay.PinFile + ")"
	}
	addrs := c.Relay.Address
	if len(c.Relay.Addresses) > 1 {
		addrs = strings.Join(c.Relay.Addresses, ", then ") + " (one at a time, moving on when one goes silent)"
	}
	fmt.Fprintf(w, "relay:        %s (UDP, QUIC), expecting key %s\n", addrs, pin)
	fmt.Fprintf(w, "identity:     %s (key %s)\n", c.Identity.CertFile, c.Identity.KeyFile)
	if c.Admin.Listen == "" {
		fmt.Fprintf(w, "admin:        disabled\n")
	} else {
		fmt.Fprintf(w, "admin:        http://%s/metrics, /healthz, /readyz\n", c.Admin.Listen)
	}
	fmt.Fprintf(w, "concurrency:  at most %d jobs at once\n", c.Concurrency)
	fmt.Fprintf(w, "on SIGTERM:   stop leasing; running jobs get %s to finish, then are failed back for redelivery\n", c.ShutdownGrace)
	fmt.Fprintf(w, "queues:\n")
	for _, q := range c.Queues {
		switch {
		case q.Exec != nil:
			env := "only the job's BUNNY_ variables"
			if len(q.Exec.Env) > 0 {
				env += " and " + strings.Join(q.Exec.Env, ", ")
			}
			fmt.Fprintf(w, "  %s: run %s (payload on stdin, result from stdout), timeout %s, output up to %s, environment %s\n",
				q.Name, quoteArgs(q.Exec.Command), q.Exec.Timeout, FormatSize(q.Exec.MaxOutput), env)
		case q.HTTP != nil:
			fmt.Fprintf(w, "  %s: POST to %s (2xx body is the result), timeout %s, output up to %s\n",
				q.Name, q.HTTP.URL, q.HTTP.Timeout, FormatSize(q.HTTP.MaxOutput))
		}
	}
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = strconv.Quote(a)
	}
	return "[" + strings.Join(q, " ") + "]"
}

// FormatSize writes n bytes the way the configuration accepts it.
func FormatSize(n int) string {
	switch {
	case n > 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n > 0 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
