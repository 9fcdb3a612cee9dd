package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDemo(t *testing.T) {
	var out, errOut bytes.Buffer
	png := filepath.Join(t.TempDir(), "grid.png")
	if err := run(context.Background(), []string{"demo", "--queries", "2", "--k", "2", "--png", png}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	s := out.String()
	for _, want := range []string{"Test digit #", "most helpful", "most harmful", "██"} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q:\n%s", want, s)
		}
	}
	if st, err := os.Stat(png); err != nil || st.Size() < 1000 {
		t.Errorf("PNG not written: %v", err)
	}
}

func TestValidateLOOJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"validate", "loo", "--dataset", "breast-cancer", "--test-points", "2", "--remove", "10", "--json"}
	if err := run(context.Background(), args, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	var res struct {
		Pearson, Spearman float64
		Points            int
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out.String())
	}
	if res.Points != 20 || res.Pearson < 0.9 || res.Spearman < 0.9 {
		t.Errorf("got %+v", res)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"validate"}, "needs a protocol"},
		{[]string{"validate", "lds"}, `unknown validation protocol "lds" (have loo, curvature, projection)`},
		{[]string{"validate", "loo", "--dataset", "iris"}, `unknown dataset "iris"`},
		{[]string{"validate", "loo", "--remove", "x"}, "invalid value"},
		{[]string{"demo", "extra"}, `unexpected argument "extra"`},
		{[]string{"demo", "--k", "0"}, "at least 1"},
		{[]string{"bench", "gemm", "--sizes", "0"}, "bad size"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error()+errOut.String(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Setenv("GOINFLUENCE_BACKEND", "nope")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"demo"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), `unknown backend "nope"`) {
		t.Errorf("forced unknown backend: %v", err)
	}
	t.Setenv("GOINFLUENCE_BACKEND", "")
	if err := run(context.Background(), []string{"demo", "-h"}, &out, &errOut); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestBenchGemm(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"bench", "gemm", "--sizes", "32", "--time", "1ms"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "cpu") || !strings.Contains(out.String(), "sgemm") {
		t.Errorf("bench table:\n%s", out.String())
	}
}
