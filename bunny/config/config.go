package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tunnel-dev/tunnel/internal/yamlcheck"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/proto"
)

// Defaults and limits.
const (
	DefaultConcurrency   = 4
	MaxConcurrency       = 1024
	DefaultShutdownGrace = 30 * time.Second
	MaxShutdownGrace     = time.Hour
	DefaultAdminListen   = "127.0.0.1:9090"
	DefaultExecTimeout   = 5 * time.Minute
	DefaultHTTPTimeout   = time.Minute
	MaxTimeout           = 24 * time.Hour
	// DefaultMaxOutput and the largest maxOutput are relay's result limit.
	DefaultMaxOutput = proto.MaxPayload
	MaxOutputLimit   = proto.MaxPayload
	// MaxFileSize bounds a configuration file; anything larger is a mistake.
	MaxFileSize = 1 << 20
)

// Config is a parsed, validated configuration.
type Config struct {
	Relay         Relay
	Identity      Identity
	Admin         Admin
	Concurrency   int
	ShutdownGrace time.Duration
	Queues        []Queue
}

// Relay is where relay is and which key it must present.
type Relay struct {
	// Address is host:port (UDP); resolved again on every dial. With
	// several addresses it is the first.
	Address string
	// Addresses is every address relay.address lists, in order: several
	// ways to one relay (the forward ports of several gateways). bunny
	// uses one at a time and moves to the next when it goes silent.
	Addresses []string
	// Pin is relay's identity pin; zero until Load reads PinFile.
	Pin keys.Pin
	// PinFile, if set, is relay's certificate; Load fills Pin from it.
	PinFile string
}

// Identity is bunny's own QUIC identity.
type Identity struct {
	CertFile string
	KeyFile  string
}

// Admin is the /metrics, /healthz and /readyz listener.
type Admin struct {
	// Listen is host:port; empty disables the listener.
	Listen string
}

// Queue is one queue bunny leases from and how its jobs run. Exactly one
// of Exec and HTTP is set.
type Queue struct {
	Name string
	Exec *Exec
	HTTP *HTTP
}

// Exec runs a command per job: payload on stdin, result from stdout.
type Exec struct {
	Command   []string
	Timeout   time.Duration
	MaxOutput int
	// Env names the variables of bunny's environment the command gets;
	// by default none.
	Env []string
}

// HTTP POSTs each job's payload to a URL; a 2xx body is the result.
type HTTP struct {
	URL       string
	Timeout   time.Duration
	MaxOutput int
}

// FieldError is one problem with one field (such as "queues[0].exec.timeout").
type FieldError = yamlcheck.FieldError

// Errors is every problem found in a file.
type Errors = yamlcheck.Errors

// The raw form is what the file holds, every scalar a string, so that each
// value is parsed here with an error naming its field and line.
type rawConfig struct {
	Relay         rawRelay    `yaml:"relay"`
	Identity      rawIdentity `yaml:"identity"`
	Admin         rawAdmin    `yaml:"admin"`
	Concurrency   string      `yaml:"concurrency"`
	ShutdownGrace string      `yaml:"shutdownGrace"`
	Queues        []rawQueue  `yaml:"queues"`
}

type rawRelay struct {
	Address addressList `yaml:"address"`
	Pin     string      `yaml:"pin"`
	PinFile string      `yaml:"pinFile"`
}

// addressList is relay.address: one host:port, or a list of them.
type addressList []string

func (addressList) OneOrMany() {}

func (a *addressList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*a = addressList{n.Value}
		return nil
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return fmt.Errorf("relay.address: want host:port or a list of them: %w", err)
		}
		*a = l
		return nil
	}
	return fmt.Errorf("line %d: relay.address: want host:port or a list of them", n.Line)
}

type rawIdentity struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

type rawAdmin struct {
	// A pointer: absent means the default, "" disables.
	Listen *string `yaml:"listen"`
}

type rawQueue struct {
	Name string   `yaml:"name"`
	Exec *rawExec `yaml:"exec"`
	HTTP *rawHTTP `yaml:"http"`
}

type rawExec struct {
	Command   []string `yaml:"command"`
	Timeout   string   `yaml:"timeout"`
	MaxOutput string   `yaml:"maxOutput"`
	Env       []string `yaml:"env"`
}

type rawHTTP struct {
	URL       string `yaml:"url"`
	Timeout   string `yaml:"timeout"`
	MaxOutput string `yaml:"maxOutput"`
}

// Load reads, parses and validates the file at path, then reads the files
// it names: relay's pinFile (into Relay.Pin) and the identity, which must
// load (its key file readable by its owner alone). Errors name the file.
func Load(path string) (*Config, error) {
	return yamlcheck.LoadFile(path, MaxFileSize, Parse, (*Config).ResolveFiles)
}

// LoadOffline reads, parses and validates the file at path without
// reading the files it names.
func LoadOffline(path string) (*Config, error) {
	return yamlcheck.LoadFile(path, MaxFileSize, Parse, nil)
}

// LoadTemplate is LoadOffline that lets values marked REPLACE through:
// the check of a shipped manifest before it is edited (`bunny config
// check --offline --allow-placeholders`).
func LoadTemplate(path string) (*Config, error) {
	return yamlcheck.LoadFile(path, MaxFileSize, ParseTemplate, nil)
}

// ResolveFiles reads relay's pinFile, if set, into Relay.Pin, and checks
// that the identity loads. The errors name the field.
func (c *Config) ResolveFiles() error {
	var es Errors
	if c.Relay.PinFile != "" {
		pin, err := keys.LoadCertificatePin(c.Relay.PinFile)
		if err != nil {
			es = append(es, &FieldError{Path: "relay.pinFile", Msg: err.Error()})
		} else {
			c.Relay.Pin = pin
		}
	}
	if _, err := keys.LoadIdentity(c.Identity.CertFile, c.Identity.KeyFile); err != nil {
		path := "identity.certFile"
		if errors.Is(err, keys.ErrKeyFileMode) || strings.Contains(err.Error(), "secret file") {
			path = "identity.keyFile"
		}
		es = append(es, &FieldError{Path: path, Msg: err.Error()})
	}
	if len(es) > 0 {
		return es
	}
	return nil
}

// Parse parses and validates a configuration. The error is an Errors
// listing every problem, each naming its field and line; a value still
// marked REPLACE is one.
func Parse(data []byte) (*Config, error) { return yamlcheck.Parse(data, fromRaw) }

// ParseTemplate is Parse that lets values marked REPLACE through.
func ParseTemplate(data []byte) (*Config, error) { return yamlcheck.ParseTemplate(data, fromRaw) }

func fromRaw(yp *yamlcheck.Parser, r *rawConfig) *Config { return (&parser{yp}).convert(r) }

// parser converts a rawConfig, collecting every problem.
type parser struct{ *yamlcheck.Parser }

func (p *parser) convert(r *rawConfig) *Config {
	c := &Config{}
	// relay
	for i, a := range r.Relay.Address {
		a = strings.TrimSpace(a)
		field := "relay.address"
		if len(r.Relay.Address) > 1 {
			field = fmt.Sprintf("relay.address[%d]", i)
		}
		switch {
		case a == "":
			p.Fail(field, "empty: want relay's host:port")
		case slices.Contains(c.Relay.Addresses, a):
			p.Fail(field, "%s is listed twice", a)
		default:
			p.HostPort(field, a, false)
		}
		c.Relay.Addresses = append(c.Relay.Addresses, a)
	}
	if len(c.Relay.Addresses) == 0 {
		p.Fail("relay.address", "required: relay's host:port (UDP; in production the local gateway's forward port), or a list of them (one per gateway, tried in order)")
	} else {
		c.Relay.Address = c.Relay.Addresses[0]
	}
	pin, pinFile := strings.TrimSpace(r.Relay.Pin), strings.TrimSpace(r.Relay.PinFile)
	switch {
	case pin != "" && pinFile != "":
		p.Fail("relay.pin", "give pin or pinFile, not both")
	case pin == "" && pinFile == "":
		p.Fail("relay.pin", "required: relay's identity pin (sha256/…, from `tunnel keys pin identity.crt`), or pinFile: relay's identity.crt")
	case pin != "":
		pv, err := keys.ParsePin(pin)
		if err != nil {
			p.Fail("relay.pin", "%v", err)
		}
		c.Relay.Pin = pv
	default:
		c.Relay.PinFile = pinFile
	}
	// identity
	c.Identity.CertFile = strings.TrimSpace(r.Identity.CertFile)
	c.Identity.KeyFile = strings.TrimSpace(r.Identity.KeyFile)
	if c.Identity.CertFile == "" {
		p.Fail("identity.certFile", "required: bunny's identity certificate (identity.crt from `tunnel keys identity`)")
	}
	if c.Identity.KeyFile == "" {
		p.Fail("identity.keyFile", "required: bunny's identity private key file (identity.key, mode 0600 or 0400)")
	}
	// admin
	c.Admin.Listen = DefaultAdminListen
	if r.Admin.Listen != nil {
		c.Admin.Listen = strings.TrimSpace(*r.Admin.Listen)
		if c.Admin.Listen != "" {
			p.HostPort("admin.listen", c.Admin.Listen, true)
		}
	}
	// concurrency
	c.Concurrency = DefaultConcurrency
	if s := strings.TrimSpace(r.Concurrency); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > MaxConcurrency {
			p.Fail("concurrency", "%q is not a whole number from 1 to %d", r.Concurrency, MaxConcurrency)
		} else {
			c.Concurrency = v
		}
	}
	c.ShutdownGrace = DefaultShutdownGrace
	if s := strings.TrimSpace(r.ShutdownGrace); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > MaxShutdownGrace {
			p.Fail("shutdownGrace", "%q is not a duration from 0s to %s (such as 30s)", r.ShutdownGrace, MaxShutdownGrace)
		} else {
			c.ShutdownGrace = d
		}
	}
	p.queues(r.Queues, c)
	return c
}

func (p *parser) queues(rs []rawQueue, c *Config) {
	if len(rs) == 0 {
		p.Fail("queues", "required: at least one queue, with an exec or http handler")
	}
	names := map[string]int{}
	for n, r := range rs {
		path := fmt.Sprintf("queues[%d]", n)
		q := Queue{Name: strings.TrimSpace(r.Name)}
		if q.Name == "" {
			p.Fail(path+".name", "required: the relay queue to lease from")
		} else if err := proto.CheckName("queue", q.Name); err != nil {
			p.Fail(path+".name", "%v", err)
		} else if prev, dup := names[q.Name]; dup {
			p.Fail(path+".name", "%q is already the name of queues[%d]", q.Name, prev)
		} else {
			names[q.Name] = n
		}
		switch {
		case r.Exec != nil && r.HTTP != nil:
			p.Fail(path, "give exec or http, not both")
		case r.Exec == nil && r.HTTP == nil:
			p.Fail(path, "required: a handler, exec or http")
		case r.Exec != nil:
			q.Exec = p.exec(path+".exec", r.Exec)
		default:
			q.HTTP = p.http(path+".http", r.HTTP)
		}
		c.Queues = append(c.Queues, q)
	}
}

// envName is what exec.env may name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (p *parser) exec(path string, r *rawExec) *Exec {
	e := &Exec{Command: r.Command}
	if len(r.Command) == 0 {
		p.Fail(path+".command", "required: the program and its arguments, such as [\"/bin/sh\", \"-c\", \"tr a-z A-Z\"]")
	} else if strings.TrimSpace(r.Command[0]) == "" {
		p.Fail(path+".command[0]", "the program is empty")
	}
	for i, a := range r.Command {
		if strings.IndexByte(a, 0) >= 0 {
			p.Fail(fmt.Sprintf("%s.command[%d]", path, i), "contains a NUL byte")
		}
	}
	e.Timeout = p.timeout(path+".timeout", r.Timeout, DefaultExecTimeout)
	e.MaxOutput = p.size(path+".maxOutput", r.MaxOutput)
	for i, name := range r.Env {
		switch {
		case !envName.MatchString(name):
			p.Fail(fmt.Sprintf("%s.env[%d]", path, i), "%q is not a variable name (letters, digits, _; not starting with a digit)", name)
		case strings.HasPrefix(name, "BUNNY_"):
			p.Fail(fmt.Sprintf("%s.env[%d]", path, i), "%s: BUNNY_ variables are bunny's own; the job's are always set", name)
		default:
			e.Env = append(e.Env, name)
		}
	}
	return e
}

func (p *parser) http(path string, r *rawHTTP) *HTTP {
	h := &HTTP{URL: strings.TrimSpace(r.URL)}
	if h.URL == "" {
		p.Fail(path+".url", "required: the URL to POST each payload to, such as http://127.0.0.1:8081/run")
	} else if u, err := url.Parse(h.URL); err != nil {
		p.Fail(path+".url", "%q is not a URL: %v", h.URL, errors.Unwrap(err))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.Fail(path+".url", "%q is not an absolute http:// or https:// URL", h.URL)
	} else if u.User != nil {
		p.Fail(path+".url", "must not hold credentials")
	}
	h.Timeout = p.timeout(path+".timeout", r.Timeout, DefaultHTTPTimeout)
	h.MaxOutput = p.size(path+".maxOutput", r.MaxOutput)
	return h
}

func (p *parser) timeout(path, s string, def time.Duration) time.Duration {
	s = strings.TrimSpace(s)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > MaxTimeout {
		p.Fail(path, "%q is not a duration above 0s and at most %s (such as 5m)", s, MaxTimeout)
		return def
	}
	return d
}

func (p *parser) size(path, s string) int {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultMaxOutput
	}
	v, err := ParseSize(s)
	if err != nil {
		p.Fail(path, "%v", err)
		return DefaultMaxOutput
	}
	if v < 1 || v > MaxOutputLimit {
		p.Fail(path, "%q is out of range: want 1 byte to 1MiB (relay's result limit)", s)
		return DefaultMaxOutput
	}
	return int(v)
}

// ParseSize reads a byte count: an integer, optionally followed by B, KiB,
// MiB or GiB (KB, MB and GB are taken as the binary units too).
func ParseSize(s string) (int64, error) {
	num := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"B", 1}} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a size (a whole number of bytes, or with KiB or MiB, such as 1MiB)", s)
	}
	return v * mult, nil
}
