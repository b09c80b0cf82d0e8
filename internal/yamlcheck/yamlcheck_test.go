package yamlcheck

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type inner struct {
	Port string   `yaml:"port"`
	Tags []string `yaml:"tags"`
}

type doc struct {
	Name   string           `yaml:"name"`
	Items  []inner          `yaml:"items"`
	One    inner            `yaml:"one"`
	ByName map[string]inner `yaml:"byName"`
}

func TestKnown(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		line       int
		path, msg  string // "" path: no error
	}{
		{"fine", "name: a\nitems:\n  - port: 1\n    tags: [x]\none: {port: 2}\n", 0, "", ""},
		{"empty values", "name:\nitems:\none:\n", 0, "", ""},
		{"unknown top", "name: a\nnmae: b\n", 2, "nmae", `unknown field (did you mean "name"?); known fields of the top level: byName, items, name, one`},
		{"unknown, nothing near", "name: a\nzzz: b\n", 2, "zzz", "unknown field; known fields of the top level: byName, items, name, one"},
		{"near miss", "one: {prot: 1}\n", 1, "one.prot", `unknown field (did you mean "port"?)`},
		{"unknown nested", "items:\n  - port: 1\n    prot: 2\n", 3, "items[0].prot", "known fields of items[0]: port, tags"},
		{"case", "Name: a\n", 1, "Name", `did you mean "name"?`},
		{"twice", "name: a\nname: b\n", 2, "name", "appears twice"},
		{"scalar for mapping", "one: 7\n", 1, "one", `want a mapping of fields, got "7"`},
		{"scalar for list", "items: x\n", 1, "items", `want a list, got "x"`},
		{"list for scalar", "name: [a]\n", 1, "name", "want a single value, got a list"},
		{"alias", "one: &a {port: 1}\nname: *a\n", 2, "name", "aliases are not supported"},
		{"scalar for map", "byName: x\n", 1, "byName", `want a mapping, got "x"`},
		{"key twice in a map", "byName:\n  a: {port: 1}\n  a: {port: 2}\n", 3, "byName.a", "appears twice"},
		{"unknown in a map value", "byName:\n  a: {prt: 1}\n", 2, "byName.a.prt", `did you mean "port"?`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var root yaml.Node
			if err := yaml.Unmarshal([]byte(tc.yaml), &root); err != nil {
				t.Fatal(err)
			}
			err := Known(&root, reflect.TypeOf(doc{}), "")
			if tc.path == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("want a FieldError, got %v", err)
			}
			if fe.Line != tc.line || fe.Path != tc.path || !strings.Contains(fe.Msg, tc.msg) {
				t.Fatalf("got line %d path %q msg %q; want line %d path %q msg containing %q", fe.Line, fe.Path, fe.Msg, tc.line, tc.path, tc.msg)
			}
		})
	}
}

// Known reports every problem, not the first.
func TestKnownEveryProblem(t *testing.T) {
	var root yaml.Node
	src := "nmae: a\nitems:\n  - prot: 1\n  - port: [x]\none: {tag: [y]}\n"
	if err := yaml.Unmarshal([]byte(src), &root); err != nil {
		t.Fatal(err)
	}
	err := Known(&root, reflect.TypeOf(doc{}), "")
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors, got %v", err)
	}
	var got []string
	for _, e := range es {
		got = append(got, fmt.Sprintf("%d %s", e.Line, e.Path))
	}
	if want := "[1 nmae 3 items[0].prot 4 items[1].port 5 one.tag]"; fmt.Sprint(got) != want {
		t.Fatalf("problems %v, want %s:\n%v", got, want, err)
	}
	for _, s := range []string{`nmae: unknown field (did you mean "name"?)`, `prot: unknown field (did you mean "port"?)`, `one.tag: unknown field (did you mean "tags"?)`} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("lacks %q:\n%v", s, err)
		}
	}
}

func TestLineOf(t *testing.T) {
	var root yaml.Node
	src := "name: a\nitems:\n  - port: 1\n  - port: 2\n    tags: [x, y]\n"
	if err := yaml.Unmarshal([]byte(src), &root); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{
		"name": 1, "items[1].port": 4, "items[1].tags[1]": 5,
		"items":            3, // a field's line is its value's
		"items[1].missing": 4, // the nearest ancestor that exists
		"nothing":          0,
	} {
		if got := LineOf(&root, path); got != want {
			t.Errorf("LineOf(%q) = %d, want %d", path, got, want)
		}
	}
}

func TestErrors(t *testing.T) {
	one := Errors{{File: "gw.yaml", Line: 3, Path: "peers[0].publicKey", Msg: "not a key"}}
	if got := one.Error(); got != "invalid configuration: gw.yaml:3: peers[0].publicKey: not a key" {
		t.Errorf("one: %q", got)
	}
	two := append(one, &FieldError{Msg: "the file is empty"})
	if got := two.Error(); !strings.HasPrefix(got, "invalid configuration (2 problems):\n  gw.yaml:3:") || !strings.HasSuffix(got, "\n  the file is empty") {
		t.Errorf("two: %q", got)
	}
}

func TestDecode(t *testing.T) {
	var d doc
	root, err := Decode([]byte("name: a\nitems:\n  - port: 7\n"), &d)
	if err != nil || d.Name != "a" || len(d.Items) != 1 || d.Items[0].Port != "7" || LineOf(root, "items[0].port") != 3 {
		t.Fatalf("decode: %+v, %v", d, err)
	}
	// Document markers that add no second document.
	for _, in := range []string{"---\nname: a\n", "name: a\n---\n", "name: a\n...\n", "name: a\n---\n# nothing\n"} {
		if _, err := Decode([]byte(in), &doc{}); err != nil {
			t.Errorf("Decode(%q): %v", in, err)
		}
	}
	for in, want := range map[string]string{
		"":                           "the file is empty",
		"name: [":                    "did not find expected node content",
		"name: a\nx: 1\n":            "2: x: unknown field",
		"name: a\n---\nname: b\n":    "2: a second YAML document",
		"name: a\n  b: c\n":          "2: mapping values are not allowed",
		"items: [a]\none: {port: 1}": "1: items[0]: want a mapping of fields",
	} {
		var d doc
		_, err := Decode([]byte(in), &d)
		var es Errors
		if !errors.As(err, &es) || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%q): %v, want an Errors containing %q", in, err, want)
		}
	}
}

// FuzzDecode: any input is decoded or refused with Errors, never a panic,
// and every error line is within the input.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"name: a\nitems:\n  - port: 1\n    tags: [x]\none: {port: 2}\n", "", "name: [", "one: &a {port: 1}\nname: *a\n", "items: x\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d doc
		_, err := Decode(b, &d)
		if err == nil {
			return
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 {
			t.Fatalf("not an Errors: %v", err)
		}
		// YAML breaks lines at \n, \r and \r\n.
		text := strings.ReplaceAll(string(b), "\r\n", "\n")
		lines := strings.Count(text, "\n") + strings.Count(text, "\r") + 1
		for _, e := range es {
			if e.Line > lines {
				t.Fatalf("line %d of a %d-line input: %v", e.Line, lines, e)
			}
		}
	})
}
