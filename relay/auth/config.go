package auth

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/tunnel-dev/tunnel/internal/filewatch"
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
	MaxFileSize = filewatch.MaxFileSize
	MaxDirSize  = filewatch.MaxDirSize
)

// Load reads a workers file, or every *.yaml and *.yml file of a
// directory.
func Load(path string) (*Config, error) {
	files, err := filewatch.ReadFiles("workers", path)
	if err != nil {
		return nil, err
	}
	return parseFiles(files)
}

// Parse parses one workers file; name is used in errors. A value still
// marked REPLACE is a problem.
func Parse(name string, data []byte) (*Config, error) {
	return parseFilesWith([]filewatch.File{{Name: name, Data: data}}, yamlcheck.Options{})
}

// ParseTemplate is Parse that lets values marked REPLACE through: the
// check of a shipped manifest before it is edited.
func ParseTemplate(name string, data []byte) (*Config, error) {
	return parseFilesWith([]filewatch.File{{Name: name, Data: data}}, yamlcheck.Options{AllowPlaceholders: true})
}

// LoadTemplate is Load that lets values marked REPLACE through (`relay
// workers check --offline --allow-placeholders`).
func LoadTemplate(path string) (*Config, error) {
	files, err := filewatch.ReadFiles("workers", path)
	if err != nil {
		return nil, err
	}
	return parseFilesWith(files, yamlcheck.Options{AllowPlaceholders: true})
}

type rawFile struct {
	Workers []rawWorker `yaml:"workers"`
}

type rawWorker struct {
	Name   string              `yaml:"name"`
	Pins   []string            `yaml:"pins"`
	Queues map[string][]string `yaml:"queues"`
}

func parseFiles(files []filewatch.File) (*Config, error) {
	return parseFilesWith(files, yamlcheck.Options{})
}

// parseFilesWith parses every file, reporting every problem of every file
// at once (an Errors, each naming its file, line and field). A worker
// name or a pin given twice is a problem even across files.
func parseFilesWith(files []filewatch.File, opts yamlcheck.Options) (*Config, error) {
	ws := &workersParser{
		c:        &Config{byPin: map[keys.Pin]*Worker{}},
		names:    map[string]string{},
		pinOwner: map[keys.Pin]string{},
	}
	err := filewatch.ParseYAML(files, opts, func(p *yamlcheck.Parser, file string, raw *rawFile) {
		ws.file = file
		for i := range raw.Workers {
			ws.worker(p, fmt.Sprintf("workers[%d]", i), &raw.Workers[i])
		}
	})
	var all yamlcheck.Errors
	if err != nil && !errors.As(err, &all) {
		return nil, err
	}
	if len(all) == 0 && len(ws.c.Workers) == 0 {
		all = append(all, &yamlcheck.FieldError{File: files[0].Name, Path: "workers", Msg: "no workers defined; relay would refuse every worker"})
	}
	if len(all) > 0 {
		return nil, all
	}
	return ws.c, nil
}

// workersParser holds what parsing one file needs from the files before
// it: the names and pins already taken, and where.
type workersParser struct {
	c        *Config
	file     string            // the file being parsed
	names    map[string]string // worker → "file:line"
	pinOwner map[keys.Pin]string
}

func (ws *workersParser) where(p *yamlcheck.Parser, path string) string {
	return fmt.Sprintf("%s:%d", ws.file, p.Line(path))
}

func (ws *workersParser) worker(p *yamlcheck.Parser, at string, rw *rawWorker) {
	w := &Worker{Name: strings.TrimSpace(rw.Name), Queues: map[string][]Action{}}
	ok := true
	fail := func(path, format string, args ...any) {
		p.Fail(path, format, args...)
		ok = false
	}
	switch nameErr := proto.CheckName("worker", w.Name); {
	case w.Name == "":
		fail(at+".name", "required: every worker needs a name")
	case nameErr != nil:
		fail(at+".name", "%v", nameErr)
	default:
		if prev, dup := ws.names[w.Name]; dup {
			fail(at+".name", "%q is also the name of the worker at %s", w.Name, prev)
		} else {
			ws.names[w.Name] = ws.where(p, at+".name")
		}
	}
	if len(rw.Pins) == 0 {
		fail(at+".pins", "required: list the sha256/… pin of each identity the worker may use (`tunnel keys pin identity.crt` prints it)")
	}
	for j, s := range rw.Pins {
		path := fmt.Sprintf("%s.pins[%d]", at, j)
		pin, err := keys.ParsePin(strings.TrimSpace(s))
		switch {
		case err != nil:
			fail(path, "%v", err)
		case slices.Contains(w.Pins, pin):
			fail(path, "%s is listed twice", pin)
		case ws.pinOwner[pin] != "":
			fail(path, "%s is also worker %s's; a key identifies one worker", pin, ws.pinOwner[pin])
		default:
			// Taken even if this worker has other problems, so that a
			// later worker with the same pin is reported too.
			w.Pins = append(w.Pins, pin)
			ws.pinOwner[pin] = w.Name
		}
	}
	if len(rw.Queues) == 0 {
		fail(at+".queues", "required: map each queue the worker may use to its actions, such as default: [lease, heartbeat, complete, fail]")
	}
	known := make([]string, 0, len(actions()))
	for _, a := range actions() {
		known = append(known, string(a))
	}
	for _, q := range slices.Sorted(maps.Keys(rw.Queues)) {
		path := at + ".queues." + q
		if err := proto.CheckName("queue", q); err != nil {
			fail(path, "%v", err)
			continue
		}
		list := rw.Queues[q]
		if len(list) == 0 {
			fail(path, "no actions; list some of lease, heartbeat, complete, fail (or remove the queue)")
		}
		for k, s := range list {
			a := Action(strings.TrimSpace(s))
			switch {
			case !slices.Contains(actions(), a):
				hint := ""
				if m := yamlcheck.Suggest(string(a), known); m != "" {
					hint = fmt.Sprintf(" (did you mean %q?)", m)
				}
				fail(fmt.Sprintf("%s[%d]", path, k), "unknown action %q%s; want lease, heartbeat, complete or fail", s, hint)
			case slices.Contains(w.Queues[q], a):
				fail(fmt.Sprintf("%s[%d]", path, k), "%s is listed twice", a)
			default:
				w.Queues[q] = append(w.Queues[q], a)
			}
		}
	}
	if !ok {
		return
	}
	for _, pin := range w.Pins {
		ws.c.byPin[pin] = w
	}
	ws.c.Workers = append(ws.c.Workers, w)
}
