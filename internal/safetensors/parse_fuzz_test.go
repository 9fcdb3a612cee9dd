package safetensors

import (
	"bytes"
	"maps"
	"reflect"
	"testing"
)

func FuzzParse(f *testing.F) {
	fl, _ := EncodeFloat64s(F16, []float64{1, -2, 0.5, 3})
	in, _ := EncodeInt64s(I64, []int64{7, 9})
	f.Add(encode(f, nil, nil))
	f.Add(encode(f, []Tensor{{Name: "x", DType: F16, Shape: []int{2, 2}, Data: fl}}, map[string]string{"format": "pt"}))
	f.Add(encode(f, []Tensor{
		{Name: "layer.a", DType: BF16, Shape: []int{2, 1, 2}, Data: fl},
		{Name: "ids", DType: I64, Shape: []int{2}, Data: in},
		{Name: "z", DType: U8, Shape: []int{0}},
	}, nil))
	f.Add(rawFile(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Fuzz(func(t *testing.T, buf []byte) {
		p, err := Parse(buf)
		if err != nil {
			return
		}
		var ts []Tensor
		for _, name := range p.Names() {
			in, ok := p.Info(name)
			if !ok {
				t.Fatalf("Names lists %q but Info does not find it", name)
			}
			ts = append(ts, Tensor{Name: name, DType: in.DType, Shape: in.Shape, Data: p.Bytes(name)})
			if in.DType.IsFloat() {
				if _, err := p.Float64s(name); err != nil {
					t.Fatalf("Float64s(%q): %v", name, err)
				}
			}
		}
		var out bytes.Buffer
		if err := Write(&out, ts, p.Metadata); err != nil {
			t.Fatalf("re-encoding an accepted file: %v", err)
		}
		q, err := Parse(out.Bytes())
		if err != nil {
			t.Fatalf("re-parsing: %v", err)
		}
		if !reflect.DeepEqual(p.Names(), q.Names()) || len(p.Metadata) != len(q.Metadata) || (len(p.Metadata) > 0 && !maps.Equal(p.Metadata, q.Metadata)) {
			t.Fatalf("names %q → %q, metadata %q → %q", p.Names(), q.Names(), p.Metadata, q.Metadata)
		}
		for _, name := range p.Names() {
			a, _ := p.Info(name)
			b, _ := q.Info(name)
			if a.DType != b.DType || !reflect.DeepEqual(a.Shape, b.Shape) || !bytes.Equal(p.Bytes(name), q.Bytes(name)) {
				t.Fatalf("tensor %q changed: %+v → %+v", name, a, b)
			}
		}
	})
}
