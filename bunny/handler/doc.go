// Package handler runs one job: Exec runs a command with the payload on
// stdin and takes stdout as the result; HTTP POSTs the payload to a local
// URL and takes a 2xx body as the result. Echo is the other end of an HTTP
// handler, one that answers each payload with itself (`bunny handler
// echo`, for smoke tests).
//
// A Handler returns the result, or an error saying why the job failed in
// words fit for relay's job record (an exit status with stderr's tail, an
// HTTP status with the body's head, a timeout, an output cap). Cancelling
// the context stops the job: Exec kills the command's whole process group,
// and with a Reaper (bunny makes itself a child subreaper) the descendants
// that left the group too. Exec's command gets an environment of its own,
// not bunny's: the job's variables and an allowlist.
package handler
