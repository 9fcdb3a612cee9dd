package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestGroupHelp checks that the command groups print their help, listing
// their subcommands, and exit as for -h (flag.ErrHelp: status 0).
func TestGroupHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"store", "-h"}, []string{"Subcommands:", "build", "info", "score", "--no-verify"}},
		{[]string{"store", "--help"}, []string{"Subcommands:"}},
		{[]string{"store", "help"}, []string{"Subcommands:"}},
		{[]string{"validate", "-h"}, []string{"Protocols:", "loo", "lds", "auc", "quality", "curvature", "projection", "mnist"}},
		{[]string{"validate", "help"}, []string{"Protocols:"}},
		{[]string{"help"}, []string{"Commands:"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errOut)
			if err != nil && !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("error %v, want help", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("help does not mention %q:\n%s", w, out.String())
				}
			}
		})
	}
}
