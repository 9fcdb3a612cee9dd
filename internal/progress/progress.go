package progress

import (
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Reporter writes stages to w. It is not safe for concurrent use.
type Reporter struct {
	w   io.Writer
	tty bool
	bar *progressbar.ProgressBar
}

// New returns a Reporter writing to w, with bars when w is a terminal.
func New(w io.Writer) *Reporter {
	f, ok := w.(*os.File)
	return &Reporter{w: w, tty: ok && term.IsTerminal(int(f.Fd()))}
}

// TTY reports whether the Reporter draws bars.
func (p *Reporter) TTY() bool { return p.tty }

// Stage ends any bar and writes msg on a line of its own.
func (p *Reporter) Stage(msg string) {
	p.Done()
	fmt.Fprintln(p.w, msg)
}

// Stages is Stage with the signature of the library's progress.Func, for
// calls that report stages: the counts are not shown.
func (p *Reporter) Stages(stage string, _, _ int) { p.Stage(stage) }

// Counter starts a stage of known length and returns the callback that
// reports how much of it is done: a bar on a terminal, otherwise msg now and
// a line when done reaches total.
func (p *Reporter) Counter(msg string) func(done, total int) {
	p.Done()
	if !p.tty {
		fmt.Fprintln(p.w, msg)
		return func(done, total int) {
			if done == total {
				fmt.Fprintf(p.w, "%s: %d/%d done\n", msg, done, total)
			}
		}
	}
	return func(done, total int) {
		if p.bar == nil {
			p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(msg), progressbar.OptionShowCount(),
				progressbar.OptionClearOnFinish())
		}
		_ = p.bar.Set(done)
	}
}

// Done ends the bar of the current stage, if any.
func (p *Reporter) Done() {
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
}
