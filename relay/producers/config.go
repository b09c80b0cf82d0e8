package producers

import (
	"crypto/subtle"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tunnel-dev/tunnel/internal/filewatch"
	"github.com/tunnel-dev/tunnel/internal/yamlcheck"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/proto"
)

// Size caps: a producers file larger than MaxFileSize, or a directory
// whose files add up to more than MaxDirSize, is refused before it is
// parsed (1 MiB as the gateway's and bunny's configs; 8 MiB as relay's
// workers directory).
const (
	MaxFileSize = filewatch.MaxFileSize
	MaxDirSize  = filewatch.MaxDirSize
)

// Action is something a producer does to a queue's jobs.
type Action string

// Actions.
const (
	Enqueue Action = "enqueue"
	Read    Action = "read"
	Cancel  Action = "cancel"
	Retry   Action = "retry"
)

// Actions lists every action.
func Actions() []Action { return []Action{Enqueue, Read, Cancel, Retry} }

// AnyQueue in a producer's queues stands for every queue.
const AnyQueue = "*"

// Producer is one producer and what it may do.
type Producer struct {
	Name   string
	Pins   []keys.Pin
	Tokens []TokenHash
	// Queues maps a queue (or AnyQueue) to the actions allowed on it.
	Queues map[string][]Action
}

// May reports whether p may take action a on queue's jobs.
func (p *Producer) May(queue string, a Action) bool {
	return p != nil && (slices.Contains(p.Queues[queue], a) || slices.Contains(p.Queues[AnyQueue], a))
}

// Config is a parsed producers file.
type Config struct {
	Producers []*Producer
	byPin     map[keys.Pin]*Producer
	tokens    []tokenEntry
}

type tokenEntry struct {
	hash TokenHash
	p    *Producer
}

// LookupPin finds the producer a client certificate's pin belongs to.
func (c *Config) LookupPin(p keys.Pin) (*Producer, bool) {
	if c == nil {
		return nil, false
	}
	pr, ok := c.byPin[p]
	return pr, ok
}

// LookupToken finds the producer a bearer token belongs to. It compares
// the token's hash with every hash in constant time, so how long it takes
// says nothing about which hash came close.
func (c *Config) LookupToken(token string) (*Producer, bool) {
	if c == nil {
		return nil, false
	}
	h := HashToken(token)
	var found *Producer
	for _, e := range c.tokens {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			found = e.p
		}
	}
	return found, found != nil
}

// Load reads and parses the producers file at path, or every *.yaml and
// *.yml file of the directory path.
func Load(path string) (*Config, error) {
	files, err := filewatch.ReadFiles("producers", path)
	if err != nil {
		return nil, err
	}
	return parseFiles(files)
}

type rawFile struct {
	Producers []rawProducer `yaml:"producers"`
}

type rawProducer struct {
	Name   string              `yaml:"name"`
	Pins   []string            `yaml:"pins"`
	Tokens []string            `yaml:"tokens"`
	Queues map[string][]string `yaml:"queues"`
}

// Parse parses one producers file. Every problem is reported, each
// naming its field and line (a yamlcheck.Errors).
func Parse(data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("the producers file is %d bytes; at most %d", len(data), MaxFileSize)
	}
	pp := newProducersParser()
	return yamlcheck.Parse(data, func(p *yamlcheck.Parser, raw *rawFile) *Config {
		pp.file(p, "", raw)
		return pp.c
	})
}

// parseFiles parses the files of a producers directory (or the one
// file) as one configuration: a producer's name or a credential given in
// two files is refused naming both.
func parseFiles(files []filewatch.File) (*Config, error) {
	pp := newProducersParser()
	if err := filewatch.ParseYAML(files, yamlcheck.Options{}, pp.file); err != nil {
		return nil, err
	}
	return pp.c, nil
}

// producersParser holds what parsing a file needs from the files before
// it: the names and credentials already taken, and where.
type producersParser struct {
	c     *Config
	names map[string]string // name → where
	owner map[string]string // credential → "producer P (at where)"
}

func newProducersParser() *producersParser {
	return &producersParser{c: &Config{byPin: map[keys.Pin]*Producer{}}, names: map[string]string{}, owner: map[string]string{}}
}

// file adds the producers of one file. Within a single unnamed file,
// where is the field's path; across files, its file and line.
func (pp *producersParser) file(p *yamlcheck.Parser, name string, raw *rawFile) {
	where := func(path string) string {
		if name == "" {
			return path
		}
		return fmt.Sprintf("%s:%d", name, p.Line(path))
	}
	for i, rp := range raw.Producers {
		at := fmt.Sprintf("producers[%d]", i)
		pr := &Producer{Name: rp.Name, Queues: map[string][]Action{}}
		if err := proto.CheckName("producer", rp.Name); err != nil {
			p.Fail(at+".name", "%v", err)
		} else if prev, dup := pp.names[rp.Name]; dup {
			p.Fail(at+".name", "%q is also the name of %s", rp.Name, prev)
		} else {
			pp.names[rp.Name] = where(at)
		}
		claim := func(path, cred string) bool {
			if other, dup := pp.owner[cred]; dup {
				p.Fail(path, "%s is also %s; a credential identifies one producer", cred, other)
				return false
			}
			pp.owner[cred] = fmt.Sprintf("producer %s's (at %s)", rp.Name, where(path))
			return true
		}
		for j, s := range rp.Pins {
			path := fmt.Sprintf("%s.pins[%d]", at, j)
			pin, err := keys.ParsePin(s)
			if err != nil {
				p.Fail(path, "%v (tunnel keys pin identity.crt prints it)", err)
				continue
			}
			if claim(path, pin.String()) {
				pr.Pins = append(pr.Pins, pin)
				pp.c.byPin[pin] = pr
			}
		}
		for j, s := range rp.Tokens {
			path := fmt.Sprintf("%s.tokens[%d]", at, j)
			h, err := ParseTokenHash(s)
			if err != nil {
				p.Fail(path, "%v", err)
				continue
			}
			if claim(path, h.String()) {
				pr.Tokens = append(pr.Tokens, h)
				pp.c.tokens = append(pp.c.tokens, tokenEntry{h, pr})
			}
		}
		if len(rp.Pins) == 0 && len(rp.Tokens) == 0 {
			p.Fail(at, "no pins and no tokens; list the sha256/… pin of its client certificate or the sha256:… hash of its token (relay producers token NAME makes one)")
		}
		if len(rp.Queues) == 0 {
			p.Fail(at+".queues", "missing; map each queue the producer may use to its actions, e.g. default: [enqueue, read]")
		}
		for _, q := range sortedKeys(rp.Queues) {
			path := at + ".queues." + q
			if q != AnyQueue {
				if err := proto.CheckName("queue", q); err != nil {
					p.Fail(path, "%v (or \"*\" for every queue)", err)
					continue
				}
			}
			list := rp.Queues[q]
			if len(list) == 0 {
				p.Fail(path, "no actions; list some of enqueue, read, cancel, retry (or remove the queue)")
			}
			for k, s := range list {
				a := Action(s)
				switch {
				case !slices.Contains(Actions(), a):
					p.Fail(fmt.Sprintf("%s[%d]", path, k), "unknown action %q; want enqueue, read, cancel or retry", abbreviate(s))
				case slices.Contains(pr.Queues[q], a):
					p.Fail(fmt.Sprintf("%s[%d]", path, k), "%s is listed twice", a)
				default:
					pr.Queues[q] = append(pr.Queues[q], a)
				}
			}
		}
		pp.c.Producers = append(pp.c.Producers, pr)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// abbreviate keeps an echoed value short.
func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// Entry is a producers-file entry, in YAML, for a producer with these
// credentials and queues (relay producers token prints one).
func Entry(name string, pins []keys.Pin, tokens []TokenHash, queues map[string][]Action) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  - name: %s\n", name)
	list := func(field string, items []string) {
		if len(items) > 0 {
			fmt.Fprintf(&b, "    %s: [%s]\n", field, strings.Join(items, ", "))
		}
	}
	var ps, ts []string
	for _, p := range pins {
		ps = append(ps, p.String())
	}
	for _, t := range tokens {
		ts = append(ts, t.String())
	}
	list("pins", ps)
	list("tokens", ts)
	b.WriteString("    queues:\n")
	for _, q := range sortedKeys(queues) {
		as := make([]string, len(queues[q]))
		for i, a := range queues[q] {
			as[i] = string(a)
		}
		key := q
		if q == AnyQueue {
			key = `"*"`
		}
		fmt.Fprintf(&b, "      %s: [%s]\n", key, strings.Join(as, ", "))
	}
	return b.String()
}
