package cli

import (
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
