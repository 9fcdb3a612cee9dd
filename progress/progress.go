// Package progress names the one callback through which the library's long
// calls (fitting, store builds, projections, scoring, iterative solvers,
// training, evaluation) report how far they are, so that a caller writes
// one function for all of them: a log line, a progress bar, a metric.
package progress

// Func is told, during a long call, the stage it is in and how much of it is
// done: done of total units (examples, rows, iterations, epochs), total 0
// when the call cannot tell or the stage has no count. A nil Func is never
// called. Unless a call's documentation says otherwise, it is called on
// the calling goroutine, between units of work, so it should return soon.
type Func func(stage string, done, total int)

// Report calls f when it is not nil.
func (f Func) Report(stage string, done, total int) {
	if f != nil {
		f(stage, done, total)
	}
}
