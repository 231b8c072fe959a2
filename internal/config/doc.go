// Package config reads scribefs's configuration: one TOML file, a few
// environment variables, and the defaults that fill in everything else.
//
// Only cmd/scribefs calls Load. Every other package takes the plain structs
// below (or narrower ones of its own) as arguments and never reads files,
// flags or the environment itself, so that tests can build any configuration
// in a line and the rules about where a setting came from live in one place.
//
// The order of precedence, lowest first, is: built-in defaults, the file,
// the S3_* environment variables, then command-line flags. Load applies the
// first three and validates the result; cmd applies its flags to the returned
// Config and calls Validate again.
//
// The file is found as follows: the --config flag, else $SCRIBEFS_CONFIG,
// else $XDG_CONFIG_HOME/scribefs/config.toml (~/.config/scribefs/config.toml),
// else /etc/scribefs/config.toml. A file named by the flag or the variable
// must exist; when neither names one and no file is at the default places,
// the built-in defaults are used alone: a hot tier under the XDG data
// directory and no cold tier.
//
// The [storage.s3] table is the one scribe-ledger uses, accepted unchanged,
// plus a few scribefs keys (prefix, refresh_secs, insecure_skip_verify,
// assume_sole_writer).
// Unknown keys, values of the wrong type and out-of-range values are errors,
// never ignored: a typo must not silently leave a default in force.
//
// Errors are one line naming the file and the key. The S3 secret key never
// appears in an error, a warning or formatted output: it is a Secret, whose
// every formatting prints "***", and Reveal is the one way to read it.
package config
