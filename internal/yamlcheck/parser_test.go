package yamlcheck

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type rawPair struct {
	Name   string `yaml:"name"`
	Listen string `yaml:"listen"`
}

type pair struct{ name, listen string }

func convertPair(p *Parser, r *rawPair) *pair {
	if r.Name == "" {
		p.Fail("name", "required")
	}
	p.HostPort("listen", r.Listen, true)
	return &pair{r.Name, strings.TrimSpace(r.Listen)}
}

func TestParse(t *testing.T) {
	c, err := Parse([]byte("name: a\nlisten: ' :7000 '\n"), convertPair)
	if err != nil || c.name != "a" || c.listen != ":7000" {
		t.Fatalf("%+v %v", c, err)
	}
	// Every problem, each with its field's line, in file order.
	_, err = Parse([]byte("listen: a/b:1\nname: \"\"\n"), convertPair)
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("want two problems: %v", err)
	}
	if es[0].Path != "listen" || es[0].Line != 1 || !strings.Contains(es[0].Msg, `"a/b" is not a valid host`) || es[1].Path != "name" || es[1].Line != 2 {
		t.Fatalf("problems: %v", err)
	}
	// Unknown fields come with convert's problems.
	_, err = Parse([]byte("nmae: a\nlisen: b\n"), convertPair)
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("want two problems, not also the absent fields they stand for: %v", err)
	}
	for i, want := range []string{`1: nmae: unknown field (did you mean "name"?)`, `2: lisen: unknown field (did you mean "listen"?)`} {
		if !strings.Contains(es[i].Error(), want) {
			t.Errorf("problem %d: %v, want %q", i, es[i], want)
		}
	}
	// With the field also there, its problems are its own.
	_, err = Parse([]byte("nmae: a\nname: ''\nlisen: b\n"), convertPair)
	if !errors.As(err, &es) || len(es) != 3 || es[1].Error() != "2: name: required" {
		t.Fatalf("want nmae, name and lisen: %v", err)
	}
	// A shape problem stops before convert.
	if _, err := Parse([]byte("name: [a]\nnmae: a\n"), convertPair); !errors.As(err, &es) || len(es) != 2 || !strings.Contains(err.Error(), "1: name: want a single value") {
		t.Fatalf("shape: %v", err)
	}
}

func TestLoadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("name: a\nlisten: ':1'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	parse := func(b []byte) (*pair, error) { return Parse(b, convertPair) }
	if c, err := LoadFile(p, 100, parse, nil); err != nil || c.name != "a" {
		t.Fatalf("%+v %v", c, err)
	}
	// A problem resolve finds gets the file and its field's line.
	_, err := LoadFile(p, 100, parse, func(*pair) error { return Errors{{Path: "listen", Msg: "in use"}} })
	if err == nil || err.Error() != "invalid configuration: "+p+":2: listen: in use" {
		t.Fatalf("resolve: %v", err)
	}
	if _, err := LoadFile(p, 3, parse, nil); err == nil || !strings.Contains(err.Error(), "larger than 3 bytes") {
		t.Fatalf("too large: %v", err)
	}
}

func TestLines(t *testing.T) {
	data := []byte("name: a\nlisten: ':1'\n")
	err := Lines(data, Errors{{Path: "listen", Msg: "in use"}, {Path: "other", Msg: "x"}, {Line: 9, Path: "name", Msg: "kept"}, {Msg: "no field"}})
	var es Errors
	if !errors.As(err, &es) || es[0].Line != 2 || es[1].Line != 0 || es[2].Line != 9 || es[3].Line != 0 {
		t.Fatalf("lines: %v", err)
	}
	if err := Lines(data, io.ErrUnexpectedEOF); err != io.ErrUnexpectedEOF {
		t.Fatalf("another error: %v", err)
	}
	if err := Lines(data, nil); err != nil {
		t.Fatalf("nil: %v", err)
	}
}

func TestPlaceholders(t *testing.T) {
	src := []byte("name: REPLACE-me\nlisten: ':7000'\n")
	_, err := Parse(src, convertPair)
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Line != 1 || es[0].Path != "name" || !strings.Contains(es[0].Msg, `"REPLACE-me" is a placeholder`) || !strings.Contains(es[0].Msg, "--allow-placeholders") {
		t.Fatalf("a placeholder: %v", err)
	}
	c, err := ParseWith(src, Options{AllowPlaceholders: true}, convertPair)
	if err != nil || c.name != "REPLACE-me" {
		t.Fatalf("allowed: %+v %v", c, err)
	}
	// Every placeholder, in lists and nested fields; field names and
	// comments are not values.
	var root yaml.Node
	if err := yaml.Unmarshal([]byte("# REPLACE the list\na:\n  - x\n  - sha256/REPLACE+AAA=\nREPLACE: {b: {c: REPLACE}}\n"), &root); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range Placeholders(&root) {
		got = append(got, fmt.Sprintf("%d %s", e.Line, e.Path))
	}
	if fmt.Sprint(got) != "[4 a[1] 5 REPLACE.b.c]" {
		t.Fatalf("placeholders %v", got)
	}
}

func TestReadFileAndInFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte("name: a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(p, 8); err != nil || string(b) != "name: a\n" {
		t.Fatalf("%q %v", b, err)
	}
	if _, err := ReadFile(p, 7); err == nil || !strings.Contains(err.Error(), "larger than 7 bytes") {
		t.Fatalf("too large: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing"), 8); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "reading configuration") {
		t.Fatalf("missing: %v", err)
	}
	err := InFile(p, Errors{{Line: 3, Path: "name", Msg: "bad"}})
	if err.Error() != "invalid configuration: "+p+":3: name: bad" {
		t.Fatalf("Errors in a file: %v", err)
	}
	if err := InFile(p, io.ErrUnexpectedEOF); !errors.Is(err, io.ErrUnexpectedEOF) || !strings.HasPrefix(err.Error(), p+": ") {
		t.Fatalf("other error in a file: %v", err)
	}
}

func TestCheckLoader(t *testing.T) {
	loader := func(name string) func(string) (*string, error) {
		return func(string) (*string, error) { return &name, nil }
	}
	for _, tc := range []struct {
		offline, allow bool
		want           string // "" for an error
	}{
		{false, false, "full"}, {true, false, "alone"}, {true, true, "template"}, {false, true, ""},
	} {
		load, err := CheckLoader(tc.offline, tc.allow, loader("full"), loader("alone"), loader("template"))
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), "--allow-placeholders needs --offline") {
				t.Errorf("offline %v allow %v: %v, want an error", tc.offline, tc.allow, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := load(""); *got != tc.want {
			t.Errorf("offline %v allow %v: the %s loader, want %s", tc.offline, tc.allow, *got, tc.want)
		}
	}
}
