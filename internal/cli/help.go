package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
)

// helpValue renders a flag's help with its default and its environment
// variable: "(default: relay.db; $RELAY_DB)". kong shows a default only
// in place of a missing placeholder (--workers-check=2s); a flag with a
// placeholder (--db=FILE) would hide it.
func helpValue(v *kong.Value) string {
	var notes []string
	if d := shownDefault(v); d != "" {
		notes = append(notes, "default: "+d)
	}
	for _, env := range v.Tag.Envs {
		notes = append(notes, "$"+env)
	}
	if len(notes) == 0 {
		return v.Help
	}
	suffix := "(" + strings.Join(notes, "; ") + ")"
	switch {
	case strings.HasSuffix(v.Help, "."):
		return v.Help[:len(v.Help)-1] + " " + suffix + "."
	case v.Help == "":
		return suffix
	default:
		return v.Help + " " + suffix
	}
}

// shownDefault is the default to print beside the help, or "" where kong
// already prints it as the placeholder, or there is none worth printing.
func shownDefault(v *kong.Value) string {
	if !v.HasDefault || v.Default == "" {
		return ""
	}
	if v.Flag != nil {
		if v.IsBool() {
			if v.Default == "false" {
				return ""
			}
			return v.Default
		}
		if v.Flag.PlaceHolder == "" {
			return "" // kong prints it: --workers-check=2s
		}
	}
	return v.Default
}

// CheckHelp renders the --help of every command of the grammar that
// newGrammar returns and reports, all at once, each flag whose default it
// does not show.
func (a App) CheckHelp(newGrammar func() any) error {
	k, err := a.New(newGrammar(), io.Discard, io.Discard)
	if err != nil {
		return err
	}
	var errs []error
	var walk func(n *kong.Node, path []string)
	walk = func(n *kong.Node, path []string) {
		var out bytes.Buffer
		if code := a.Main(newGrammar(), append(slices.Clone(path), "--help"), &out, io.Discard); code != ExitOK {
			errs = append(errs, fmt.Errorf("%s --help: exit %d", commandName(n), code))
			return
		}
		help := strings.Join(strings.Fields(out.String()), " ")
		for _, f := range n.Flags {
			if f.Hidden || !f.HasDefault || f.Default == "" || (f.IsBool() && f.Default == "false") {
				continue
			}
			want := "default: " + f.Default
			if f.PlaceHolder == "" && !f.IsBool() {
				want = "--" + f.Name + "=" + f.FormatPlaceHolder()
			}
			if !strings.Contains(help, want) {
				errs = append(errs, fmt.Errorf("%s --help does not show --%s's default %q (no %q)", commandName(n), f.Name, f.Default, want))
			}
		}
		for _, c := range n.Children {
			if c.Type == kong.CommandNode {
				walk(c, append(path, c.Name))
			}
		}
	}
	walk(k.Model.Node, nil)
	return errors.Join(errs...)
}

// Check proves a binary's command line keeps the rules, reporting every
// breach at once: CheckEnv on its whole model, then CheckHelp.
func (a App) Check(newGrammar func() any) error {
	k, err := a.New(newGrammar(), io.Discard, io.Discard)
	if err != nil {
		return err
	}
	return errors.Join(CheckEnv(k.Model), a.CheckHelp(newGrammar))
}
