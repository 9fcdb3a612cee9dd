package safetensors_test

import (
	"bytes"
	"fmt"
	"log"

	"github.com/goinfluence/goinfluence/internal/safetensors"
)

func Example() {
	data, err := safetensors.EncodeFloat64s(safetensors.F16, []float64{0.1, 0.2, 0.3, 0.4})
	if err != nil {
		log.Fatal(err)
	}
	var buf bytes.Buffer
	err = safetensors.Write(&buf, []safetensors.Tensor{
		{Name: "w", DType: safetensors.F16, Shape: []int{2, 2}, Data: data},
	}, map[string]string{"note": "demo"})
	if err != nil {
		log.Fatal(err)
	}

	f, err := safetensors.Parse(buf.Bytes())
	if err != nil {
		log.Fatal(err)
	}
	info, _ := f.Info("w")
	v, _ := f.Float64s("w")
	fmt.Println(f.Names(), info.DType, info.Shape, f.Metadata["note"])
	fmt.Printf("%.4f\n", v)
	// Output:
	// [w] F16 [2 2] demo
	// [0.1000 0.2000 0.3000 0.3999]
}
