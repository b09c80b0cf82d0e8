package yamlcheck

import (
	"errors"
	"fmt"
	"github.com/tunnel-dev/tunnel/internal/fileread"

	"gopkg.in/yaml.v3"

	"github.com/tunnel-dev/tunnel/internal/hostport"
)

// Parser collects the problems a config package finds while it converts
// a decoded raw config, each naming its field and the field's line.
type Parser struct {
	root *yaml.Node
	errs Errors
}

// Options says what a parse lets through.
type Options struct {
	// AllowPlaceholders lets values marked REPLACE through: for checking
	// the shipped, not yet edited, manifests. Otherwise each is a problem.
	AllowPlaceholders bool
}

// Parse decodes data strictly (Decode) into a raw R, then has convert turn
// it into the config C, reporting each problem with Fail. The error is an
// Errors listing every problem, in file order, each naming its field and
// line: when the only decoding problems are unknown fields, convert still
// runs, so that they come with the rest (less those at a field that is
// missing because it was misspelt: "did you mean" says it).
//
// A value still marked REPLACE is a problem; ParseWith can let it
// through.
func Parse[R, C any](data []byte, convert func(p *Parser, raw *R) *C) (*C, error) {
	return ParseWith(data, Options{}, convert)
}

// ParseTemplate is Parse that lets values marked REPLACE through, for
// checking a file that is still a template.
func ParseTemplate[R, C any](data []byte, convert func(p *Parser, raw *R) *C) (*C, error) {
	return ParseWith(data, Options{AllowPlaceholders: true}, convert)
}

// ParseWith is Parse with options.
func ParseWith[R, C any](data []byte, opts Options, convert func(p *Parser, raw *R) *C) (*C, error) {
	var raw R
	root, errs, filled := decode(data, &raw)
	if !filled {
		return nil, errs
	}
	p := &Parser{root: root, errs: errs}
	if !opts.AllowPlaceholders {
		p.errs = append(p.errs, Placeholders(root)...)
	}
	c := convert(p, &raw)
	if len(p.errs) > 0 {
		return nil, p.errs.withoutConsequences().sorted()
	}
	return c, nil
}

// Fail records a problem with the field at path.
func (p *Parser) Fail(path, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Line: LineOf(p.root, path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Line is the line of the field at path, or of its nearest ancestor.
func (p *Parser) Line(path string) int { return LineOf(p.root, path) }

// HostPort fails path unless s is host:port (hostport.Check). A listen
// address may leave the host empty and use port 0.
func (p *Parser) HostPort(path, s string, listen bool) {
	if err := hostport.Check(s, listen); err != nil {
		p.Fail(path, "%v", err)
	}
}

// ReadFile reads a config file of at most max bytes.
func ReadFile(path string, max int) ([]byte, error) {
	data, err := fileread.Read(path, int64(max))
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	return data, nil
}

// InFile names the file path in err: each FieldError of an Errors gets
// it as File; any other error is prefixed with it.
func InFile(path string, err error) error {
	var es Errors
	if errors.As(err, &es) {
		for _, e := range es {
			e.File = path
		}
		return es
	}
	return fmt.Errorf("%s: %w", path, err)
}

// Lines fills in, from the document data, the line of each problem of an
// Errors that names a field but no line: the problems found after
// parsing, such as a key file a field names that cannot be read. Any
// other error is returned as it is.
func Lines(data []byte, err error) error {
	var es Errors
	if !errors.As(err, &es) {
		return err
	}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return es
	}
	for _, e := range es {
		if e.Line == 0 && e.Path != "" {
			e.Line = LineOf(&root, e.Path)
		}
	}
	return es
}

// LoadFile reads the config file at path (at most max bytes) and parses
// it; then, unless resolve is nil, resolve reads the files it names.
// Every error names the file, and each problem its line.
func LoadFile[C any](path string, max int, parse func([]byte) (*C, error), resolve func(*C) error) (*C, error) {
	data, err := ReadFile(path, max)
	if err != nil {
		return nil, err
	}
	c, err := parse(data)
	if err == nil && resolve != nil {
		err = Lines(data, resolve(c))
	}
	if err != nil {
		return nil, InFile(path, err)
	}
	return c, nil
}
