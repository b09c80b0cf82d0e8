package filewatch

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// A file of comma-separated numbers: a change that parses takes effect, a
// change that does not is counted and the running value stays.
func TestWatchReloadsAndRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "numbers")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("1,2")
	var installs []string
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := Watch(ctx, Options[[]byte, []int]{
		What: "numbers", Path: path, Metric: "test_numbers", GaugeHelp: "Numbers.", Registerer: reg,
		Read: func() ([]byte, [32]byte, error) {
			b, err := os.ReadFile(path)
			return b, sha256.Sum256(b), err
		},
		Parse: func(b []byte) ([]int, error) {
			var out []int
			for _, f := range strings.Split(string(b), ",") {
				n, err := strconv.Atoi(f)
				if err != nil {
					return nil, errors.New("not a number: " + f)
				}
				out = append(out, n)
			}
			return out, nil
		},
		Count: func(c []int) int { return len(c) },
		Installed: func(old, c []int, first bool) {
			installs = append(installs, strconv.Itoa(len(old))+">"+strconv.Itoa(len(c)))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		content   string
		want      int
		ok, error float64
	}{
		{"1,2", 2, 0, 0},     // unchanged: nothing
		{"1,2,3", 3, 1, 0},   // a valid change
		{"1,x", 3, 1, 1},     // refused: the running one stays
		{"1,x", 3, 1, 1},     // the same bad content is counted once
		{"4,5,6,7", 4, 2, 1}, // valid again
	}
	for i, s := range steps {
		write(s.content)
		w.reload() // what the ticker or Check does, without waiting for it
		if got := len(w.Config()); got != s.want {
			t.Errorf("step %d: %d numbers in force, want %d", i, got, s.want)
		}
		if got := value(t, w.reloads.WithLabelValues("ok")); got != s.ok {
			t.Errorf("step %d: ok reloads %v, want %v", i, got, s.ok)
		}
		if got := value(t, w.reloads.WithLabelValues("error")); got != s.error {
			t.Errorf("step %d: error reloads %v, want %v", i, got, s.error)
		}
		if got := value(t, w.entries); got != float64(s.want) {
			t.Errorf("step %d: gauge %v, want %v", i, got, s.want)
		}
	}
	if want := "0>2 2>3 3>4"; strings.Join(installs, " ") != want {
		t.Errorf("installs %v, want %s", installs, want)
	}
	cancel()
	<-w.Done()
}

func TestWatchRefusesABadStart(t *testing.T) {
	_, err := Watch(context.Background(), Options[[]byte, int]{
		What: "numbers", Metric: "test_numbers",
		Read:  func() ([]byte, [32]byte, error) { return nil, [32]byte{}, errors.New("no such file") },
		Parse: func([]byte) (int, error) { return 0, nil },
		Count: func(int) int { return 0 },
	})
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err = %v, want the read error", err)
	}
}

// value reads a counter's or a gauge's value.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
