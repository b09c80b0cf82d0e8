// Package demo runs the whole path on one machine, as a user would see it:
// relay, the EKS-side gateway, the AKS-side gateway and bunny as separate
// processes on loopback, with throwaway keys and identities in a temporary
// directory. It submits a batch of jobs through relay's producer API, shows
// progress, checks every result, prints a summary (jobs/s, end-to-end
// latency, bytes through the tunnel) and proves the tunnel's scope.
//
// It is what `tunnel demo` (and `make demo`) runs. It needs no root: the
// processes share loopback, and bunny reaches relay only by the address
// the AKS gateway forwards.
package demo
