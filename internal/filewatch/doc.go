// Package filewatch keeps a configuration read from files in force and
// reloads it when their contents change: relay's workers and producers,
// each a file or a directory of YAML files read as one (ReadFiles, with
// the same size caps), are both watched this way. A change that does not parse
// is refused, logged once and counted, and the running configuration
// stays.
package filewatch
