// Package progress reports the stages of a long command on a terminal: a bar
// when the writer is a terminal, a plain line per stage otherwise, so that
// logs stay readable. The library reports progress through callbacks; this
// is what the CLI turns them into.
package progress
