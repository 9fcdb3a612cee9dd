package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// notInput refuses an output path that names one of the command's inputs,
// as the same string or, through links or another spelling, the same file:
// no command may write over one of its inputs (DESIGN §6).
func notInput(cmd, outFlag, out string, inputs map[string]string) error {
	outInfo, outErr := os.Stat(out)
	for flag, in := range inputs {
		if in == "" {
			continue
		}
		same := filepath.Clean(in) == filepath.Clean(out)
		if !same && outErr == nil {
			if inInfo, err := os.Stat(in); err == nil {
				same = os.SameFile(inInfo, outInfo)
			}
		}
		if same {
			return fmt.Errorf("%w: %s: %s %s is also %s: choose another output", errUsage, cmd, outFlag, out, flag)
		}
	}
	return nil
}
