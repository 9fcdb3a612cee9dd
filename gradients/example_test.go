package gradients_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/goinfluence/goinfluence/gradients"
)

func ExampleWriteFile() {
	dir, err := os.MkdirTemp("", "gradients")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "grads.safetensors")

	// Two examples: a factored layer with two tokens of a 3→2 linear map, and
	// a dense bias gradient.
	b := &gradients.Batch{N: 2, IDs: []int64{10, 11}, Layers: []gradients.Layer{
		{Name: "encoder.fc1", DIn: 3, DOut: 2, Tokens: 2, TokenAxis: true,
			A: []float64{1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1},
			S: []float64{0.5, -0.5, 1, 2, 0.25, 0, -1, 1}},
		{Name: "head.bias", D: 2, Grad: []float64{0.1, 0.2, 0.3, 0.4}},
	}}
	if err := gradients.WriteFile(path, b, gradients.F32, nil); err != nil {
		log.Fatal(err)
	}

	f, err := gradients.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	fmt.Println("examples:", f.N(), "ids:", f.IDs())
	for _, l := range f.Layers() {
		fmt.Printf("%s factored=%v tokens=%d d_in=%d d_out=%d D=%d %s\n",
			l.Name, l.Factored, l.Tokens, l.DIn, l.DOut, l.D, l.DType)
	}
	// Output:
	// examples: 2 ids: [10 11]
	// encoder.fc1 factored=true tokens=2 d_in=3 d_out=2 D=6 F32
	// head.bias factored=false tokens=0 d_in=0 d_out=0 D=2 F32
}
