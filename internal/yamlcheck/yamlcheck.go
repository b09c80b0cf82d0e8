// Package yamlcheck is the strict half of reading a YAML config file that
// yaml.v3 leaves out: it walks the document against the struct it will be
// decoded into and names the first unknown, repeated or wrongly shaped
// field with its line; it finds the line of any field path; and it holds
// the errors that name a field and the Parser that collects them, shared
// by the gateway's and bunny's config packages (relay's workers file uses
// its Strict decoding).
package yamlcheck

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
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

// Known walks the YAML tree against the struct type t and reports the
// first field that t does not have, with its line and the fields it does.
func Known(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return Known(n.Content[0], t, path)
	}
	if n.Kind == yaml.AliasNode {
		return &FieldError{Line: n.Line, Path: path, Msg: "YAML aliases are not supported here"}
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return nil
			}
			return &FieldError{Line: n.Line, Path: path, Msg: "want a mapping of fields, got " + describeNode(n)}
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
				hint := ""
				for _, name := range names {
					if strings.EqualFold(name, k.Value) {
						hint = fmt.Sprintf(" (did you mean %q? field names are case-sensitive)", name)
					}
				}
				return &FieldError{Line: k.Line, Path: join(path, k.Value),
					Msg: fmt.Sprintf("unknown field%s; known fields of %s: %s", hint, orRoot(path), strings.Join(names, ", "))}
			}
			if seen[k.Value] {
				return &FieldError{Line: k.Line, Path: join(path, k.Value), Msg: "appears twice"}
			}
			seen[k.Value] = true
			if err := Known(v, f.Type, join(path, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return &FieldError{Line: n.Line, Path: path, Msg: "want a list, got " + describeNode(n)}
		}
		for i, c := range n.Content {
			if err := Known(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return &FieldError{Line: n.Line, Path: path, Msg: "want a single value, got " + describeNode(n)}
		}
	}
	return nil
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
// struct a config package parses from): a syntax error, an empty file,
// and an unknown, repeated or wrongly shaped field are each an Errors
// naming the field and line. It returns the document's tree, for LineOf.
func Decode(data []byte, out any) (*yaml.Node, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if len(root.Content) == 0 {
		return nil, Errors{{Msg: "the file is empty"}}
	}
	if err := Known(&root, reflect.TypeOf(out), ""); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return nil, Errors{fe}
		}
		return nil, Errors{{Msg: err.Error()}}
	}
	if _, err := Strict(data, out); err != nil {
		return nil, Errors{{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	return &root, nil
}

// Strict decodes the first YAML document of data into out with yaml.v3's
// KnownFields, so that a field out does not have is an error, and reports
// whether another well-formed document follows it. The error is io.EOF
// when data holds no document, else yaml.v3's.
func Strict(data []byte, out any) (more bool, err error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		return false, err
	}
	var next yaml.Node
	return dec.Decode(&next) == nil, nil
}
