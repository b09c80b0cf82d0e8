package yamlcheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// FieldError is one problem with one field.
type FieldError struct {
	File string
	Line int
	Path string // such as "peers[0].publicKey"
	Msg  string
	// meant is, for an unknown field, the path of the absent field it
	// is a near miss of: a problem there is this one's consequence.
	meant string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file, in file order.
type Errors []*FieldError

// Unwrap gives errors.Is and errors.As each problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	if len(es) == 1 {
		return "invalid configuration: " + lines[0]
	}
	return fmt.Sprintf("invalid configuration (%d problems):\n  %s", len(es), strings.Join(lines, "\n  "))
}

// sorted orders es by line, stably; problems without a line go last.
func (es Errors) sorted() Errors {
	out := slices.Clone(es)
	slices.SortStableFunc(out, func(a, b *FieldError) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return a.Line - b.Line
	})
	return out
}

// Known walks the YAML tree against the struct type t and reports every
// field that t does not have (with its line, the fields it does have, and
// the one it may have meant), every field given twice, and every value of
// the wrong shape. The error is an Errors, nil when there is no problem.
func Known(n *yaml.Node, t reflect.Type, path string) error {
	var w walker
	w.walk(n, t, path)
	if len(w.errs) == 0 {
		return nil
	}
	return w.errs
}

// OneOrMany is a list type that also takes a single value (its
// UnmarshalYAML makes that a list of one): the check lets a scalar
// through where the list is.
type OneOrMany interface {
	yaml.Unmarshaler
	OneOrMany()
}

var oneOrManyType = reflect.TypeFor[OneOrMany]()

// walker collects Known's problems. fatal is set by any problem other
// than an unknown field: one that keeps the document from decoding.
type walker struct {
	errs  Errors
	fatal bool
}

func (w *walker) fail(line int, path, msg string) {
	w.errs = append(w.errs, &FieldError{Line: line, Path: path, Msg: msg})
	w.fatal = true
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) > 0 {
			w.walk(n.Content[0], t, path)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		w.fail(n.Line, path, "YAML aliases are not supported here")
		return
	}
	null := n.Kind == yaml.ScalarNode && n.Tag == "!!null"
	switch t.Kind() {
	case reflect.Struct:
		if null {
			return
		}
		if n.Kind != yaml.MappingNode {
			w.fail(n.Line, path, "want a mapping of fields, got "+describeNode(n))
			return
		}
		fields := map[string]reflect.StructField{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = f
			names = append(names, tag)
		}
		sort.Strings(names)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				meant, h := hint(k.Value, names)
				e := &FieldError{Line: k.Line, Path: join(path, k.Value),
					Msg: fmt.Sprintf("unknown field%s; known fields of %s: %s", h, orRoot(path), strings.Join(names, ", "))}
				if meant != "" && !hasKey(n, meant) {
					e.meant = join(path, meant)
				}
				w.errs = append(w.errs, e)
				continue
			}
			if seen[k.Value] {
				w.fail(k.Line, join(path, k.Value), "appears twice")
				continue
			}
			seen[k.Value] = true
			w.walk(v, f.Type, join(path, k.Value))
		}
	case reflect.Map:
		if null {
			return
		}
		if n.Kind != yaml.MappingNode {
			w.fail(n.Line, path, "want a mapping, got "+describeNode(n))
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				w.fail(k.Line, path, "want a name as the key, got "+describeNode(k))
				continue
			}
			if seen[k.Value] {
				w.fail(k.Line, join(path, k.Value), "appears twice")
				continue
			}
			seen[k.Value] = true
			w.walk(v, t.Elem(), join(path, k.Value))
		}
	case reflect.Slice:
		if null {
			return
		}
		if n.Kind == yaml.ScalarNode && reflect.PointerTo(t).Implements(oneOrManyType) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			w.fail(n.Line, path, "want a list, got "+describeNode(n))
			return
		}
		for i, c := range n.Content {
			w.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.fail(n.Line, path, "want a single value, got "+describeNode(n))
		}
	}
}

// hint is the field an unknown field name may have meant and the "did
// you mean" saying so, or "".
func hint(name string, known []string) (meant, msg string) {
	for _, k := range known {
		if strings.EqualFold(k, name) {
			return k, fmt.Sprintf(" (did you mean %q? field names are case-sensitive)", k)
		}
	}
	if s := Suggest(name, known); s != "" {
		return s, fmt.Sprintf(" (did you mean %q?)", s)
	}
	return "", ""
}

// hasKey reports whether the mapping n has the key name.
func hasKey(n *yaml.Node, name string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == name {
			return true
		}
	}
	return false
}

// withoutConsequences drops the problems at a field that is absent
// because an unknown field near its name stands in its place: "did you
// mean" already says what is wrong there.
func (es Errors) withoutConsequences() Errors {
	meant := map[string]bool{}
	for _, e := range es {
		if e.meant != "" {
			meant[e.meant] = true
		}
	}
	if len(meant) == 0 {
		return es
	}
	var out Errors
	for _, e := range es {
		if !meant[e.Path] {
			out = append(out, e)
		}
	}
	return out
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func orRoot(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

// LineOf finds the line of the node at path ("peers[0].publicKey"), or
// the line of its nearest ancestor that exists. Zero when nothing matches.
func LineOf(root *yaml.Node, path string) int {
	n := root
	if n == nil {
		return 0
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, part := range splitPath(path) {
		var next *yaml.Node
		if idx, err := strconv.Atoi(part); err == nil {
			if n.Kind == yaml.SequenceNode && idx >= 0 && idx < len(n.Content) {
				next = n.Content[idx]
			}
		} else if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part {
					next = n.Content[i+1]
					line = n.Content[i].Line
					break
				}
			}
		}
		if next == nil {
			break
		}
		n = next
		if n.Line > 0 {
			line = n.Line
		}
	}
	return line
}

// splitPath turns "peers[0].allowedIPs[1]" into [peers 0 allowedIPs 1].
func splitPath(path string) []string {
	var parts []string
	for _, dotted := range strings.Split(path, ".") {
		for dotted != "" {
			i := strings.IndexByte(dotted, '[')
			if i < 0 {
				parts = append(parts, dotted)
				break
			}
			if i > 0 {
				parts = append(parts, dotted[:i])
			}
			j := strings.IndexByte(dotted, ']')
			if j < i {
				parts = append(parts, dotted[i+1:])
				break
			}
			parts = append(parts, dotted[i+1:j])
			dotted = dotted[j+1:]
		}
	}
	return parts
}

// Decode reads a YAML document strictly into out (a pointer to the raw
// struct a config package parses from): a syntax error, an empty file, a
// second document, and every unknown, repeated or wrongly shaped field
// are an Errors naming the field and line. It returns the document's
// tree, for LineOf.
func Decode(data []byte, out any) (*yaml.Node, error) {
	root, errs, _ := decode(data, out)
	if len(errs) > 0 {
		return nil, errs
	}
	return root, nil
}

// decode is Decode that also says whether out was filled in despite the
// problems: when every problem is an unknown field, out holds the rest
// of the document, so that a parser can report its problems too.
func decode(data []byte, out any) (root *yaml.Node, errs Errors, filled bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	root = new(yaml.Node)
	if err := dec.Decode(root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{Msg: "the file is empty"}}, false
		}
		return nil, yamlErrors(err), false
	}
	if len(root.Content) == 0 {
		return nil, Errors{{Msg: "the file is empty"}}, false
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil && !emptyDocument(&next):
		errs = append(errs, &FieldError{Line: next.Line, Msg: "a second YAML document; the file holds one (remove the '---' or put everything in the first)"})
	case err != nil && !errors.Is(err, io.EOF):
		errs = append(errs, yamlErrors(err)...)
	}
	var w walker
	w.walk(root, reflect.TypeOf(out), "")
	errs = append(errs, w.errs...)
	if w.fatal {
		return root, errs, false
	}
	if err := root.Decode(out); err != nil {
		return root, append(errs, yamlErrors(err)...), false
	}
	return root, errs, true
}

// emptyDocument reports whether n is a document with nothing in it, as a
// trailing "---" makes.
func emptyDocument(n *yaml.Node) bool {
	if len(n.Content) == 0 {
		return true
	}
	c := n.Content[0]
	return len(n.Content) == 1 && c.Kind == yaml.ScalarNode && c.Tag == "!!null" && c.Value == ""
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// yamlErrors turns yaml.v3's error into Errors, one per problem it lists,
// each with its line.
func yamlErrors(err error) Errors {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors:\n")
	var es Errors
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		e := &FieldError{Msg: l}
		if m := yamlLineRE.FindStringSubmatch(l); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = m[2]
		}
		es = append(es, e)
	}
	if len(es) == 0 {
		es = Errors{{Msg: s}}
	}
	return es
}
