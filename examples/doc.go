// Package examples holds no code of its own: each subdirectory is a runnable
// program (package main) showing one use of goinfluence in a few dozen lines,
// built on the library alone.
//
//	go run ./examples/quickstart
//
// The test in this directory builds every example and runs it on small
// inputs, so that `go test ./...` and `make test` keep them working.
package examples
