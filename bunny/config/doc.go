// Package config reads bunny's configuration file: where relay is and
// which key it has, bunny's own identity, the admin listener, concurrency,
// the shutdown grace, and a handler (exec or http) per queue.
//
// Parsing is strict: unknown fields, duplicated fields, values of the
// wrong shape and missing required fields are errors, each naming its
// field and line (FieldError), all reported at once (Errors). Parse reads
// bytes alone; Load also reads the files the configuration names (relay's
// pin file, the identity) so that a bad key is refused before bunny dials.
package config
