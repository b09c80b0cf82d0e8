// Package yamlcheck is the strict half of reading a YAML config file that
// yaml.v3 leaves out, shared by the gateway's, bunny's and relay's config
// files so that all three report problems one way: it walks the document
// against the struct it will be decoded into and names every unknown
// field (with "did you mean" for a near miss), repeated field or wrongly
// shaped value with its line; it finds the line of any field path; it
// refuses values still marked REPLACE; and it holds the errors that name
// a file, line and field and the Parser that collects them, so that every
// problem of a file is reported at once, in file order:
//
//	invalid configuration (2 problems):
//	  gateway.yaml:14: forward[0].lisen: unknown field (did you mean "listen"?); known fields of forward[0]: listen, name, peer, protocol, to
//	  gateway.yaml:16: forward[0].to: "10.99.0.9:7443" is not one of peer "eks"'s addresses (10.99.0.1/32)
package yamlcheck
