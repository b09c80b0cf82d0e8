// Package leaseloop is the lease loop relay's benchmarks run, shaped like
// bunny's: one Lease call at a time for as many jobs as slots are free,
// each job completed by its slot, completions that finish together
// sharing one call.
package leaseloop
