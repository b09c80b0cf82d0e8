package cli

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

type serveGrammar struct {
	Listen  string `default:":7443" placeholder:"ADDR" help:"Address to listen on."`
	Timeout int    `help:"Server timeout."`
	Logging
}

func (*serveGrammar) Run(_ context.Context, env Env) error {
	_, err := io.WriteString(env.Stdout, "served\n")
	return err
}

type submitGrammar struct {
	Timeout int `help:"Client timeout."`
	Logging
}

func (*submitGrammar) Run() error { return nil }

type clashGrammar struct {
	Serve   serveGrammar     `cmd:""`
	Submit  submitGrammar    `cmd:""`
	Version kong.VersionFlag `help:"Print the version."`
}

type prefixedGrammar struct {
	Serve   serveGrammar     `cmd:""`
	Submit  submitGrammar    `cmd:"" envprefix:"SUBMIT_"`
	Version kong.VersionFlag `help:"Print the version."`
}

var testApp = App{Name: "demo", Description: "test", EnvPrefix: "DEMO", Version: "v1.2.3"}

func model(t *testing.T, grammar any, opts ...kong.Option) *kong.Application {
	t.Helper()
	k, err := testApp.New(grammar, io.Discard, io.Discard, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return k.Model
}

func TestCheckEnv(t *testing.T) {
	// Two --timeout flags of different meaning share $DEMO_TIMEOUT.
	err := CheckEnv(model(t, &clashGrammar{}))
	if err == nil || !strings.Contains(err.Error(), "$DEMO_TIMEOUT means two things: demo serve --timeout (Server timeout.) and demo submit --timeout (Client timeout.)") {
		t.Fatalf("clash: %v", err)
	}
	// --log-level on both is one setting; it is not reported.
	if strings.Contains(err.Error(), "LOG_LEVEL") {
		t.Errorf("the same setting reported as a clash: %v", err)
	}
	// A command prefix resolves it.
	m := model(t, &prefixedGrammar{})
	if err := CheckEnv(m); err != nil {
		t.Fatalf("prefixed: %v", err)
	}
	envs := map[string][]string{}
	walkFlags(m.Node, func(n *kong.Node, f *kong.Flag) { envs[commandName(n)+" --"+f.Name] = f.Envs })
	for flag, want := range map[string]string{
		"demo serve --timeout":    "DEMO_TIMEOUT",
		"demo submit --timeout":   "DEMO_SUBMIT_TIMEOUT",
		"demo submit --log-level": "DEMO_SUBMIT_LOG_LEVEL",
		"demo --version":          "",
		"demo --help":             "",
	} {
		if got := strings.Join(envs[flag], ","); got != want {
			t.Errorf("%s: env %q, want %q", flag, got, want)
		}
	}

	// kong's own DefaultEnvars binds --version: the check says so.
	k, err := kong.New(&prefixedGrammar{}, kong.Name("demo"), kong.DefaultEnvars("DEMO"))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckEnv(k.Model); err == nil || !strings.Contains(err.Error(), "demo --version is bound to $DEMO_VERSION") {
		t.Errorf("version bound: %v", err)
	}
	// A flag with no variable, and one outside the binary's prefix.
	k, err = kong.New(&struct {
		Serve serveGrammar `cmd:""`
		Other string       `env:"OTHER" help:"x"`
	}{}, kong.Name("demo"))
	if err != nil {
		t.Fatal(err)
	}
	err = CheckEnv(k.Model)
	for _, want := range []string{"demo serve --listen has no environment variable", "demo --other: $OTHER does not start with DEMO_"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckEnv lacks %q: %v", want, err)
		}
	}
}

// A variable named like --version or --help must not make a daemon print
// and exit 0 instead of starting.
func TestVersionAndHelpIgnoreEnvironment(t *testing.T) {
	for _, env := range []string{"DEMO_VERSION", "DEMO_HELP"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, "true")
			var out, errOut bytes.Buffer
			code := testApp.Main(&prefixedGrammar{}, []string{"serve"}, &out, &errOut)
			if code != ExitOK || out.String() != "served\n" {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
			}
		})
	}
	var out bytes.Buffer
	if code := testApp.Main(&prefixedGrammar{}, []string{"--version"}, &out, io.Discard); code != ExitOK || !strings.Contains(out.String(), "v1.2.3") {
		t.Fatalf("--version: exit %d, %q", code, out.String())
	}
}

func TestHelpShowsDefaults(t *testing.T) {
	var out bytes.Buffer
	if code := testApp.Main(&prefixedGrammar{}, []string{"serve", "--help"}, &out, io.Discard); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	help := strings.Join(strings.Fields(out.String()), " ")
	for _, want := range []string{
		"--listen=ADDR Address to listen on (default: :7443; $DEMO_LISTEN).",
		`--log-format="text" Log format: text or json ($DEMO_LOG_FORMAT).`,
		"Server timeout ($DEMO_TIMEOUT).",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

// Every default reaches --help, on every command.
func TestCheckHelp(t *testing.T) {
	if err := testApp.CheckHelp(func() any { return &prefixedGrammar{} }); err != nil {
		t.Fatal(err)
	}
	if err := testApp.Check(func() any { return &prefixedGrammar{} }); err != nil {
		t.Fatal(err)
	}
	if err := testApp.Check(func() any { return &clashGrammar{} }); err == nil || !strings.Contains(err.Error(), "$DEMO_TIMEOUT means two things") {
		t.Fatalf("Check of a clash: %v", err)
	}
}
