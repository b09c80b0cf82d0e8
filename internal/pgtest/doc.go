// Package pgtest runs a throwaway PostgreSQL server for tests: initdb into
// a temporary directory, pg_ctl start as an unprivileged user (PostgreSQL
// refuses to run as root), listening only on a unix socket in that
// directory. Each test gets a fresh database. Tests skip, saying why, when
// the server binaries are not installed (Debian's postgresql package puts
// them under /usr/lib/postgresql/*/bin).
package pgtest
