// Package backoff computes retry delays: exponential growth from a base up
// to a ceiling, with "equal jitter" (half of the delay fixed, half
// random), so that clients which failed together retry apart but every
// one of them still backs off. relay spaces a job's retries with it and
// bunny its redials and retried calls.
package backoff
