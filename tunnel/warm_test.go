package tunnel

import (
	"testing"
	"time"
)

func TestStatusWarm(t *testing.T) {
	t0 := time.Now()
	after, before := t0.Add(time.Second), t0.Add(-time.Second)
	peers := func(hs ...time.Time) []PeerStatus {
		var ps []PeerStatus
		for _, h := range hs {
			ps = append(ps, PeerStatus{LastHandshake: h})
		}
		return ps
	}
	rule := func(healthy ...bool) []RuleStatus {
		var us []UpstreamStatus
		for _, h := range healthy {
			us = append(us, UpstreamStatus{Healthy: h})
		}
		return []RuleStatus{{Upstreams: us}}
	}
	for _, tt := range []struct {
		name string
		st   Status
		want bool
	}{
		{"no peers", Status{}, false},
		{"both handshaken since", Status{Peers: peers(after, after)}, true},
		{"one handshake older", Status{Peers: peers(after, before)}, false},
		{"one never", Status{Peers: peers(after, time.Time{})}, false},
		{"upstreams healthy", Status{Peers: peers(after, after), Rules: rule(true, true)}, true},
		{"an upstream unhealthy", Status{Peers: peers(after, after), Rules: rule(true, false)}, false},
	} {
		if got := tt.st.Warm(t0); got != tt.want {
			t.Errorf("%s: Warm = %v, want %v", tt.name, got, tt.want)
		}
	}
}
