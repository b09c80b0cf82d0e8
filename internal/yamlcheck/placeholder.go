package yamlcheck

import (
	"errors"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Placeholder is the word the shipped manifests put in each value that
// must be edited before they are applied.
const Placeholder = "REPLACE"

// Placeholders lists every value under root (not a field name) that holds
// Placeholder, each with its path and line.
func Placeholders(root *yaml.Node) Errors {
	var es Errors
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], join(path, n.Content[i].Value))
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		case yaml.ScalarNode:
			if strings.Contains(n.Value, Placeholder) {
				es = append(es, &FieldError{Line: n.Line, Path: path,
					Msg: fmt.Sprintf("%q is a placeholder: put your value here (only a check of the unedited manifests, --offline --allow-placeholders, lets it through)", n.Value)})
			}
		}
	}
	if root != nil {
		walk(root, "")
	}
	return es
}

// CheckLoader picks the loader a config check's --offline and
// --allow-placeholders ask for: full reads the files the config names
// too, alone reads the file alone, template also lets values marked
// REPLACE through. Placeholders pass only a check of the file alone,
// since a full check means the file is ready to use.
func CheckLoader[C any](offline, allowPlaceholders bool, full, alone, template func(string) (*C, error)) (func(string) (*C, error), error) {
	switch {
	case allowPlaceholders && !offline:
		return nil, errors.New("--allow-placeholders needs --offline: a full check is of a file ready to use, with every REPLACE value edited")
	case allowPlaceholders:
		return template, nil
	case offline:
		return alone, nil
	}
	return full, nil
}
