//go:build tools

// Package tools pins the Authelia server's main package in this wrapper module, so that `go mod tidy`
// keeps its full dependency graph (and every checksum) in go.mod/go.sum. It is never compiled.
package tools

import _ "github.com/authelia/authelia/v4/cmd/authelia"
