package auth

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tunnel-dev/tunnel/internal/yamlcheck"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/proto"
)

// Action is something a worker does to a queue's jobs.
type Action string

// Actions.
const (
	Lease     Action = "lease"
	Heartbeat Action = "heartbeat"
	Complete  Action = "complete"
	Fail      Action = "fail"
)

func actions() []Action { return []Action{Lease, Heartbeat, Complete, Fail} }

// Worker is one worker identity and what it may do.
type Worker struct {
	Name string
	Pins []keys.Pin
	// Queues maps a queue to the actions allowed on it.
	Queues map[string][]Action
}

// May reports whether w may take action a on queue's jobs.
func (w *Worker) May(queue string, a Action) bool {
	return slices.Contains(w.Queues[queue], a)
}

// QueuesFor lists, sorted, the queues on which w may take action a.
func (w *Worker) QueuesFor(a Action) []string {
	var out []string
	for q, as := range w.Queues {
		if slices.Contains(as, a) {
			out = append(out, q)
		}
	}
	sort.Strings(out)
	return out
}

// Config is a parsed workers file (or directory).
type Config struct {
	Workers []*Worker
	byPin   map[keys.Pin]*Worker
}

// Lookup finds the worker a pin belongs to.
func (c *Config) Lookup(p keys.Pin) (*Worker, bool) {
	if c == nil {
		return nil, false
	}
	w, ok := c.byPin[p]
	return w, ok
}

// Size caps: a workers file larger than MaxFileSize, or a directory whose
// files add up to more than MaxDirSize, is refused before it is parsed.
const (
	MaxFileSize = 1 << 20
	MaxDirSize  = 8 << 20
)

// Load reads a workers file, or every *.yaml and *.yml file of a
// directory.
func Load(path string) (*Config, error) {
	files, err := readFiles(path)
	if err != nil {
		return nil, err
	}
	return parseFiles(files)
}

type file struct {
	name string
	data []byte
}

// readFiles reads path, or the workers files of the directory path.
func readFiles(path string) ([]file, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading workers file: %w", err)
	}
	if !fi.IsDir() {
		b, err := yamlcheck.ReadFile(path, MaxFileSize)
		if err != nil {
			return nil, err
		}
		return []file{{path, b}}, nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("reading workers directory: %w", err)
	}
	var files []file
	total := 0
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			continue
		}
		p := filepath.Join(path, n)
		// Follow symlinks (a mounted ConfigMap's files are links into
		// ..data); skip what is not a regular file.
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		b, err := yamlcheck.ReadFile(p, MaxFileSize)
		if err != nil {
			return nil, err
		}
		if total += len(b); total > MaxDirSize {
			return nil, fmt.Errorf("reading workers directory %s: its files add up to more than the cap of %d bytes (at %s)", path, MaxDirSize, n)
		}
		files = append(files, file{p, b})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("workers directory %s holds no .yaml or .yml file", path)
	}
	return files, nil
}

// Parse parses one workers file; name is used in errors.
func Parse(name string, data []byte) (*Config, error) {
	return parseFiles([]file{{name, data}})
}

type rawFile struct {
	Workers []rawWorker `yaml:"workers"`
}

type rawWorker struct {
	Name   yaml.Node              `yaml:"name"`
	Pins   []yaml.Node            `yaml:"pins"`
	Queues map[string][]yaml.Node `yaml:"queues"`
}

func parseFiles(files []file) (*Config, error) {
	c := &Config{byPin: map[keys.Pin]*Worker{}}
	names := map[string]string{}      // worker → where
	pinOwner := map[keys.Pin]string{} // pin → worker
	for _, f := range files {
		var raw rawFile
		more, err := yamlcheck.Strict(f.data, &raw)
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty; want a 'workers:' list", f.name)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s", f.name, explainYAML(err))
		}
		if more {
			return nil, fmt.Errorf("%s: more than one YAML document; put every worker in one 'workers:' list", f.name)
		}
		for i, rw := range raw.Workers {
			at := fmt.Sprintf("%s: workers[%d]", f.name, i)
			w, err := parseWorker(at, rw)
			if err != nil {
				return nil, err
			}
			if prev, dup := names[w.Name]; dup {
				return nil, fmt.Errorf("%s: name %q is also used by %s", at, w.Name, prev)
			}
			names[w.Name] = at
			for _, p := range w.Pins {
				if other, dup := pinOwner[p]; dup {
					return nil, fmt.Errorf("%s (%s): pin %s is also worker %s's; a key identifies one worker", at, w.Name, p, other)
				}
				pinOwner[p] = w.Name
				c.byPin[p] = w
			}
			c.Workers = append(c.Workers, w)
		}
	}
	if len(c.Workers) == 0 {
		return nil, fmt.Errorf("%s: no workers defined; relay would refuse every worker", files[0].name)
	}
	return c, nil
}

func parseWorker(at string, rw rawWorker) (*Worker, error) {
	line := func(n *yaml.Node) string {
		if n.Line > 0 {
			return fmt.Sprintf(" (line %d)", n.Line)
		}
		return ""
	}
	if rw.Name.Kind != yaml.ScalarNode || rw.Name.Value == "" {
		return nil, fmt.Errorf("%s.name: missing; every worker needs a name", at)
	}
	w := &Worker{Name: rw.Name.Value, Queues: map[string][]Action{}}
	if err := proto.CheckName("worker", w.Name); err != nil {
		return nil, fmt.Errorf("%s.name%s: %v", at, line(&rw.Name), err)
	}
	at = fmt.Sprintf("%s (%s)", at, w.Name)
	if len(rw.Pins) == 0 {
		return nil, fmt.Errorf("%s.pins: missing; list the sha256/… pin of each identity the worker may use (tunnel keys pin identity.crt prints it)", at)
	}
	for j := range rw.Pins {
		n := &rw.Pins[j]
		if n.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s.pins[%d]%s: want a sha256/… string", at, j, line(n))
		}
		p, err := keys.ParsePin(n.Value)
		if err != nil {
			return nil, fmt.Errorf("%s.pins[%d]%s: %v", at, j, line(n), err)
		}
		if slices.Contains(w.Pins, p) {
			return nil, fmt.Errorf("%s.pins[%d]%s: %s is listed twice", at, j, line(n), p)
		}
		w.Pins = append(w.Pins, p)
	}
	if len(rw.Queues) == 0 {
		return nil, fmt.Errorf("%s.queues: missing; map each queue the worker may use to its actions, e.g. default: [lease, heartbeat, complete, fail]", at)
	}
	for q, list := range rw.Queues {
		if err := proto.CheckName("queue", q); err != nil {
			return nil, fmt.Errorf("%s.queues: %v", at, err)
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("%s.queues.%s: no actions; list some of lease, heartbeat, complete, fail (or remove the queue)", at, q)
		}
		for k := range list {
			n := &list[k]
			a := Action(n.Value)
			if n.Kind != yaml.ScalarNode || !slices.Contains(actions(), a) {
				return nil, fmt.Errorf("%s.queues.%s[%d]%s: unknown action %q; want lease, heartbeat, complete or fail", at, q, k, line(n), n.Value)
			}
			if slices.Contains(w.Queues[q], a) {
				return nil, fmt.Errorf("%s.queues.%s[%d]%s: %s is listed twice", at, q, k, line(n), a)
			}
			w.Queues[q] = append(w.Queues[q], a)
		}
	}
	return w, nil
}

// explainYAML rewrites yaml.v3's errors in terms of the file, not of Go
// types.
func explainYAML(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.ReplaceAll(s, "unmarshal errors:\n  ", "")
	s = strings.ReplaceAll(s, "\n  ", "; ")
	s = strings.ReplaceAll(s, "not found in type auth.rawFile", "is unknown at the top level (known: workers)")
	s = strings.ReplaceAll(s, "not found in type auth.rawWorker", "is unknown in a worker (known: name, pins, queues)")
	s = strings.ReplaceAll(s, "into auth.rawFile", "into the top level (want a mapping with 'workers:')")
	s = strings.ReplaceAll(s, "into []auth.rawWorker", "into workers (want a list)")
	s = strings.ReplaceAll(s, "into auth.rawWorker", "into a worker (want a mapping of name, pins, queues)")
	s = strings.ReplaceAll(s, "into []yaml.Node", "into a list")
	s = strings.ReplaceAll(s, "into map[string][]yaml.Node", "into queues (want a mapping of queue to actions)")
	return s
}
