package progress_test

import (
	"fmt"

	"github.com/goinfluence/goinfluence/progress"
)

// A Func that logs every report; a nil Func reports nothing.
func ExampleFunc() {
	var log progress.Func = func(stage string, done, total int) {
		fmt.Printf("%s: %d/%d\n", stage, done, total)
	}
	log.Report("project", 256, 1000)
	var none progress.Func
	none.Report("ignored", 1, 2)
	// Output:
	// project: 256/1000
}
