package yamlcheck

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	// Every problem, each with its field's line.
	_, err = Parse([]byte("listen: a/b:1\nname: \"\"\n"), convertPair)
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("want two problems: %v", err)
	}
	if es[0].Path != "name" || es[0].Line != 2 || es[1].Path != "listen" || es[1].Line != 1 || !strings.Contains(es[1].Msg, `"a/b" is not a valid host`) {
		t.Fatalf("problems: %v", err)
	}
	// A decoding error comes before convert.
	if _, err := Parse([]byte("nmae: a\n"), convertPair); err == nil || !strings.Contains(err.Error(), "1: nmae: unknown field") {
		t.Fatalf("unknown field: %v", err)
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

func TestStrict(t *testing.T) {
	var d doc
	if more, err := Strict([]byte("name: a\n"), &d); err != nil || more || d.Name != "a" {
		t.Fatalf("one document: %v %v %+v", more, err, d)
	}
	if more, err := Strict([]byte("name: a\n---\nname: b\n"), &doc{}); err != nil || !more {
		t.Fatalf("two documents: %v %v", more, err)
	}
	if _, err := Strict(nil, &doc{}); !errors.Is(err, io.EOF) {
		t.Fatalf("empty: %v", err)
	}
	if _, err := Strict([]byte("nmae: a\n"), &doc{}); err == nil || !strings.Contains(err.Error(), "field nmae not found") {
		t.Fatalf("unknown field: %v", err)
	}
}
