package relaytest

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metric sums a counter over every run of relay (each restart has its
// own registry), or reads a gauge of the running one, over the series
// whose labels include labels. A metric no series matches reads 0.
func (r *Relay) Metric(name string, labels map[string]string) float64 {
	r.helper()
	r.mu.Lock()
	regs := append([]*prometheus.Registry{r.watchReg}, r.regs...)
	current := r.regs[len(r.regs)-1]
	r.mu.Unlock()
	var sum float64
	for _, reg := range regs {
		mfs, err := reg.Gather()
		if err != nil {
			r.fatalf("gathering metrics: %v", err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				if !hasLabels(m, labels) {
					continue
				}
				switch {
				case m.Counter != nil:
					sum += m.Counter.GetValue()
				case m.Gauge != nil && (reg == current || reg == r.watchReg):
					sum += m.Gauge.GetValue()
				}
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
