// Package metricstest reads a running binary's /metrics for tests: the
// series it exposes, checked against the ones a test or a document names.
package metricstest
