// Package api is relay's producer interface: HTTPS/JSON on an internal
// address (never exposed through the tunnel), and the Go client the relay
// CLI uses.
//
//	POST /v1/jobs               enqueue one job          201 (200 if the idempotency key matched)
//	POST /v1/jobs/batch         enqueue up to 1000 jobs  200, all or none
//	GET  /v1/jobs/{id}          one job                  200, 404
//	GET  /v1/jobs?queue=&state=&limit=&after=            200, a page in creation order
//	POST /v1/jobs/{id}/cancel   cancel                   200, 409 if it already finished
//	POST /v1/jobs/{id}/retry    retry a dead, failed or cancelled job  200, 409
//
// Every request comes from a producer of the producers file (package
// producers): by a client certificate whose pin it lists (mutual TLS), or
// by a bearer token whose hash it lists. Each call is an action on a
// queue (enqueue, read — get and list —, cancel, retry) and is refused
// 403 outside what the file grants; a job of a queue the producer may not
// even read is answered 404 as an unknown id is. Requests with an Origin
// header, or a Sec-Fetch-Site other than same-origin or none, are refused
// 403 (a browser's cross-site request), and a body must be
// application/json (415). Refusals are counted by reason and logged at
// most once per reason every 10 s; tokens never are.
//
// Connections are bounded per peer (ServerOptions.MaxConns, conns.go):
// per source address until a connection's first request authenticates,
// then per producer. Past the bound an address's new connection is closed
// before TLS; a producer's closes its longest-idle one, or, all busy, is
// answered 429 too_many_connections and closed.
//
// Bodies are strict JSON: unknown fields, trailing data and bodies over the
// size cap are refused. Payloads and results are bytes, so they travel in
// base64 ("payload"); "payload_text" takes UTF-8 text instead. Errors are
// {"error": {"code", "message", "field"}} with a status that says whose
// fault it is: 400 bad input (field names the culprit), 401 no known
// credentials, 403 not allowed, 404, 409, 413 too large, 415 not JSON,
// 429 relay holds as many unfinished jobs as it may (or the producer's
// connections are all busy), 503 overloaded or
// shutting down (retry), 500 relay's own failure.
package api
