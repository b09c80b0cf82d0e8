package cli

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/alecthomas/kong"
)

// envars gives every flag of the model an environment variable, except
// --help and --version: a variable left set by CI or a chart must never
// turn a daemon's start into printing help or a version and exiting 0.
// A flag with an env:"…" tag keeps it; every other flag gets
// PREFIX_FLAG_NAME. CheckEnv proves no name ends up meaning two things.
func envars(prefix string) kong.Option {
	return kong.PostBuild(func(k *kong.Kong) error {
		walkFlags(k.Model.Node, func(_ *kong.Node, f *kong.Flag) {
			switch {
			case noEnv(f):
				f.Envs, f.Value.Tag.Envs = nil, nil
			case len(f.Envs) > 0:
				// An explicit env:"…" tag: kept as written.
			default:
				// envprefix:"STATUS_" on a command gives its own flags
				// $TUNNEL_STATUS_…, where a bare name would mean another
				// command's setting too.
				name := prefix + "_" + f.Tag.EnvPrefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(f.Name))
				f.Envs = []string{name}
				f.Value.Tag.Envs = []string{name}
			}
		})
		return nil
	})
}

// noEnv reports the flags that take no environment variable: --help and
// --version only print and exit.
func noEnv(f *kong.Flag) bool {
	return f.Name == "help" || f.Value.Target.Type() == reflect.TypeOf(kong.VersionFlag(false))
}

func walkFlags(n *kong.Node, fn func(*kong.Node, *kong.Flag)) {
	for _, f := range n.Flags {
		fn(n, f)
	}
	for _, c := range n.Children {
		walkFlags(c, fn)
	}
}

// CheckEnv walks every command of app and reports, all at once, each flag
// that breaks the environment rules: --help and --version take no
// variable; every other flag takes one, named PREFIX_… after the binary;
// and one name is bound only to flags that are the same setting (the same
// flag name, type and help text, such as --log-level on every daemon or
// --server on every `relay jobs` command).
func CheckEnv(app *kong.Application) error {
	prefix := strings.ToUpper(app.Name) + "_"
	type binding struct {
		node *kong.Node
		flag *kong.Flag
	}
	first := map[string]binding{}
	var errs []error
	walkFlags(app.Node, func(n *kong.Node, f *kong.Flag) {
		where := fmt.Sprintf("%s --%s", commandName(n), f.Name)
		if noEnv(f) {
			if len(f.Envs) > 0 {
				errs = append(errs, fmt.Errorf("%s is bound to $%s: a variable left set would make every command print and exit", where, strings.Join(f.Envs, ", $")))
			}
			return
		}
		if len(f.Envs) == 0 {
			errs = append(errs, fmt.Errorf("%s has no environment variable", where))
		}
		for _, env := range f.Envs {
			if !strings.HasPrefix(env, prefix) {
				errs = append(errs, fmt.Errorf("%s: $%s does not start with %s", where, env, prefix))
			}
			b, ok := first[env]
			if !ok {
				first[env] = binding{n, f}
				continue
			}
			if !sameSetting(b.flag, f) {
				errs = append(errs, fmt.Errorf("$%s means two things: %s --%s (%s) and %s (%s)",
					env, commandName(b.node), b.flag.Name, b.flag.Help, where, f.Help))
			}
		}
	})
	return errors.Join(errs...)
}

// sameSetting reports whether two flags are one setting repeated on
// several commands.
func sameSetting(a, b *kong.Flag) bool {
	return a.Name == b.Name && a.Value.Target.Type() == b.Value.Target.Type() && a.Help == b.Help
}

func commandName(n *kong.Node) string {
	if n.Parent == nil {
		return n.Name
	}
	return commandName(n.Parent) + " " + n.Name
}
