package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// UsageError marks an error as the user's input being wrong (a bad flag, a
// malformed config file): the command exits 2 and nothing has started.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage wraps err as a UsageError; nil stays nil.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &UsageError{Err: err}
}

// Logging is the pair of flags every command takes for its logs.
type Logging struct {
	LogFormat string `name:"log-format" enum:"text,json" default:"text" help:"Log format: text or json."`
	LogLevel  string `name:"log-level" enum:"debug,info,warn,error" default:"info" help:"Least severe level to log: debug, info, warn or error."`
}

// Logger builds the slog logger the flags ask for, writing to w.
func (l Logging) Logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(l.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if l.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Env is what a command needs from the process: its streams. Commands take
// it (and a context) as bound arguments of their Run method.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
}

// App names a binary: its name, one-line description, the prefix of its
// environment variables and its version.
type App struct {
	Name        string
	Description string
	EnvPrefix   string // TUNNEL: flags read $TUNNEL_FLAG_NAME
	Version     string // what --version prints after the name
}

// New builds the parser for grammar: every flag but --help and --version
// can also be set by an environment variable (EnvPrefix + "_" + FLAG_NAME
// unless the flag's env:"…" tag names another), and --help shows every
// default and variable. Extra kong options follow.
func (a App) New(grammar any, stdout, stderr io.Writer, opts ...kong.Option) (*kong.Kong, error) {
	opts = append([]kong.Option{
		kong.Name(a.Name),
		kong.Description(a.Description),
		envars(a.EnvPrefix),
		kong.Writers(stdout, stderr),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, Summary: true}),
		kong.ValueFormatter(helpValue),
		kong.Vars{"version": a.Name + " " + a.Version},
	}, opts...)
	return kong.New(grammar, opts...)
}

// Main parses args into grammar (see New) and runs the chosen command.
// The command's Run method may take a context.Context (cancelled on SIGINT
// or SIGTERM) and an Env. Main returns the exit code.
func (a App) Main(grammar any, args []string, stdout, stderr io.Writer) int {
	name := a.Name
	exitCode := -1
	parser, err := a.New(grammar, stdout, stderr, kong.Exit(func(code int) { exitCode = code }))
	if err != nil {
		fmt.Fprintf(stderr, "%s: internal error building the command line: %v\n", name, err)
		return ExitFailure
	}
	kctx, err := parser.Parse(args)
	if exitCode >= 0 {
		// --help or --version printed and asked to exit.
		if exitCode != 0 {
			return ExitUsage
		}
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		var pe *kong.ParseError
		if errors.As(err, &pe) {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", strings.TrimSpace(name+" "+commandPath(pe.Context)))
		}
		return ExitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	err = kctx.Run(Env{Stdout: stdout, Stderr: stderr})
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	var ue *UsageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	return ExitFailure
}

func commandPath(ctx *kong.Context) string {
	if ctx == nil {
		return ""
	}
	cmd := ctx.Command()
	// kong renders positional arguments as <arg>; keep only the words.
	var words []string
	for _, w := range strings.Fields(cmd) {
		if strings.HasPrefix(w, "<") {
			break
		}
		words = append(words, w)
	}
	return strings.Join(words, " ")
}
