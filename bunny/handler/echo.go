package handler

import (
	"io"
	"net/http"
	"strconv"
)

// Echo is an HTTP job handler that answers every POST with its body, as
// bunny's http handler expects of one: the handler bunny's image carries
// (`bunny handler echo`) so that a new deployment can be checked end to
// end before its real handler exists. A body larger than max is refused
// with 413 (the job fails, saying so); GET /healthz answers ok.
func Echo(max int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/healthz":
			_, _ = io.WriteString(w, "ok\n")
		case r.Method != http.MethodPost:
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST a job's payload; it comes back as the result", http.StatusMethodNotAllowed)
		default:
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
			if err != nil {
				http.Error(w, "payload larger than "+strconv.FormatInt(max, 10)+" bytes", http.StatusRequestEntityTooLarge)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(body)
		}
	})
}
