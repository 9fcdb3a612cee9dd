package main

import (
	"fmt"
	"math"
	"math/rand/v2"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// net is an MLP as gorgonia users write one: layer l computes
// z_l = h_l·w_l + b_l with w_l of shape in × out (inputs as row vectors) and
// a bias vector b_l, tanh after every hidden layer, softmax cross-entropy on
// the last layer's z. The weights live here as plain float64 slices between
// graphs, so that the training graph, the gradient graph and the native
// model all see the same numbers.
type net struct {
	sizes []int       // [inputs, hidden…, classes]
	w     [][]float64 // w[l]: sizes[l] × sizes[l+1], row-major
	b     [][]float64 // b[l]: sizes[l+1]
}

// newNet draws Glorot-uniform weights from a generator seeded by seed;
// biases start at zero.
func newNet(sizes []int, seed uint64) *net {
	rng := rand.New(rand.NewPCG(seed, 0x676f72676f6e6961)) // "gorgonia"
	n := &net{sizes: sizes}
	for l := 0; l+1 < len(sizes); l++ {
		in, out := sizes[l], sizes[l+1]
		limit := math.Sqrt(6 / float64(in+out))
		w := make([]float64, in*out)
		for i := range w {
			w[i] = limit * (2*rng.Float64() - 1)
		}
		n.w = append(n.w, w)
		n.b = append(n.b, make([]float64, out))
	}
	return n
}

// layers returns the number of linear layers.
func (n *net) layers() int { return len(n.w) }

// graph is one expression graph of the network over a fixed set of examples.
type graph struct {
	g      *G.ExprGraph
	ws, bs []*G.Node // parameters, bound to the net's values
	hs     []*G.Node // the input of each linear layer (hs[0] is x)
	zs     []*G.Node // the output of each linear layer, before the activation
	losses *G.Node   // ℓ_n = logsumexp(z_n) − z_n[y_n], one per example
	loss   *G.Node   // Σ_n ℓ_n
}

// build returns the graph of the network on the rows of x with labels y.
// The parameter nodes hold copies of the net's weights.
func (n *net) build(x *linalg.Dense64, y []int) (*graph, error) {
	rows := x.Rows
	gr := &graph{g: G.NewGraph()}
	classes := n.sizes[len(n.sizes)-1]
	xs := make([]float64, rows*x.Cols)
	onehot := make([]float64, rows*classes)
	for i := 0; i < rows; i++ {
		copy(xs[i*x.Cols:(i+1)*x.Cols], x.Row(i))
		onehot[i*classes+y[i]] = 1
	}
	h := G.NewMatrix(gr.g, tensor.Float64, G.WithShape(rows, x.Cols), G.WithName("x"),
		G.WithValue(tensor.New(tensor.WithShape(rows, x.Cols), tensor.WithBacking(xs))))
	for l := range n.layers() {
		in, out := n.sizes[l], n.sizes[l+1]
		w := G.NewMatrix(gr.g, tensor.Float64, G.WithShape(in, out), G.WithName(fmt.Sprintf("w%d", l+1)),
			G.WithValue(tensor.New(tensor.WithShape(in, out), tensor.WithBacking(clone(n.w[l])))))
		b := G.NewVector(gr.g, tensor.Float64, G.WithShape(out), G.WithName(fmt.Sprintf("b%d", l+1)),
			G.WithValue(tensor.New(tensor.WithShape(out), tensor.WithBacking(clone(n.b[l])))))
		hw, err := G.Mul(h, w)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", l+1, err)
		}
		z, err := G.BroadcastAdd(hw, b, nil, []byte{0})
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", l+1, err)
		}
		gr.ws, gr.bs = append(gr.ws, w), append(gr.bs, b)
		gr.hs, gr.zs = append(gr.hs, h), append(gr.zs, z)
		if l+1 < n.layers() {
			if h, err = G.Tanh(z); err != nil {
				return nil, fmt.Errorf("layer %d: %w", l+1, err)
			}
		}
	}

	// Cross-entropy per example: logsumexp shifted by the row maximum, less
	// the logit of the label (picked by a one-hot mask).
	z := gr.zs[len(gr.zs)-1]
	y1 := G.NewConstant(tensor.New(tensor.WithShape(rows, classes), tensor.WithBacking(onehot)), G.WithName("onehot"))
	mx := G.Must(G.Max(z, 1))
	lse := G.Must(G.Add(G.Must(G.Log(G.Must(G.Sum(G.Must(G.Exp(G.Must(G.BroadcastSub(z, mx, nil, []byte{1})))), 1)))), mx))
	zy := G.Must(G.Sum(G.Must(G.HadamardProd(z, y1)), 1))
	gr.losses = G.Must(G.Sub(lse, zy))
	gr.loss = G.Must(G.Sum(gr.losses))
	return gr, nil
}

// params returns the parameter nodes, weights then biases of each layer.
func (gr *graph) params() G.Nodes {
	var ps G.Nodes
	for l := range gr.ws {
		ps = append(ps, gr.ws[l], gr.bs[l])
	}
	return ps
}

// train fits the net to (x, y) by full-batch Adam on
// (1/N) Σ_n ℓ_n + (λ/2)‖θ‖², biases included (the penalty of models.MLP).
func (n *net) train(x *linalg.Dense64, y []int, l2 float64, steps int, lr float64) error {
	gr, err := n.build(x, y)
	if err != nil {
		return err
	}
	cost := G.Must(G.Div(gr.loss, G.NewConstant(float64(x.Rows))))
	var sq G.Nodes
	for _, p := range gr.params() {
		sq = append(sq, G.Must(G.Sum(G.Must(G.Square(p)))))
	}
	penalty := G.Must(G.Mul(G.Must(G.ReduceAdd(sq)), G.NewConstant(l2/2)))
	cost = G.Must(G.Add(cost, penalty))
	if _, err := G.Grad(cost, gr.params()...); err != nil {
		return fmt.Errorf("gorgonia: grad: %w", err)
	}
	vm := G.NewTapeMachine(gr.g, G.BindDualValues(gr.params()...))
	defer vm.Close()
	solver := G.NewAdamSolver(G.WithLearnRate(lr))
	for range steps {
		if err := vm.RunAll(); err != nil {
			return fmt.Errorf("gorgonia: run: %w", err)
		}
		if err := solver.Step(G.NodesToValueGrads(gr.params())); err != nil {
			return fmt.Errorf("gorgonia: adam: %w", err)
		}
		vm.Reset()
	}
	for l := range n.layers() {
		copy(n.w[l], values(gr.ws[l]))
		copy(n.b[l], values(gr.bs[l]))
	}
	return nil
}

// predict returns the most probable class of each row of x.
func (n *net) predict(x *linalg.Dense64) ([]int, error) {
	gr, err := n.build(x, make([]int, x.Rows))
	if err != nil {
		return nil, err
	}
	var zv G.Value
	G.Read(gr.zs[len(gr.zs)-1], &zv)
	vm := G.NewTapeMachine(gr.g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		return nil, fmt.Errorf("gorgonia: run: %w", err)
	}
	z := floats(zv)
	classes := n.sizes[len(n.sizes)-1]
	pred := make([]int, x.Rows)
	for i := range pred {
		row := z[i*classes : (i+1)*classes]
		for c, v := range row {
			if v > row[pred[i]] {
				pred[i] = c
			}
		}
	}
	return pred, nil
}

// grads is what one backward pass of gorgonia gives on a set of examples.
type grads struct {
	// Batch holds, for each linear layer, the factored per-example
	// gradients: A = [h_l, 1] (the layer input with a bias column), S =
	// ∂L/∂z_l of the summed loss L = Σ_n ℓ_n, whose row n is ∂ℓ_n/∂z_{l,n}
	// because no other example's loss depends on row n.
	Batch *gradients.Batch
	// Weight holds gorgonia's gradient of L with respect to each layer's
	// parameters, laid out as goinfluence lays out a layer: DOut × DIn
	// row-major, the bias gradient as the last column.
	Weight [][]float64
	// Losses holds ℓ_n.
	Losses []float64
}

// gradients runs the graph of the net on (x, labels) forward and backward
// and reads the factors off the pre-activation nodes: after
// G.Grad(L, params…), every node on the path from the parameters to L has
// its derivative node (Deriv), z_l's included.
func (n *net) gradients(x *linalg.Dense64, labels []int) (*grads, error) {
	gr, err := n.build(x, labels)
	if err != nil {
		return nil, err
	}
	if _, err := G.Grad(gr.loss, gr.params()...); err != nil {
		return nil, fmt.Errorf("gorgonia: grad: %w", err)
	}
	// The tape machine reuses the memory of a node whose value is no longer
	// needed, so every value wanted afterwards is copied out by a read
	// node as it is computed.
	hv, sv := make([]G.Value, n.layers()), make([]G.Value, n.layers())
	var lv G.Value
	for l, z := range gr.zs {
		d := z.Deriv()
		if d == nil {
			return nil, fmt.Errorf("gorgonia: layer %d: the pre-activation has no derivative node", l+1)
		}
		G.Read(gr.hs[l], &hv[l])
		G.Read(d, &sv[l])
	}
	G.Read(gr.losses, &lv)
	vm := G.NewTapeMachine(gr.g, G.BindDualValues(gr.params()...))
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		return nil, fmt.Errorf("gorgonia: run: %w", err)
	}

	rows := x.Rows
	out := &grads{Batch: &gradients.Batch{N: rows}, Losses: floats(lv)}
	for l := range n.layers() {
		in, dout := n.sizes[l], n.sizes[l+1]
		din := in + 1
		h, s := floats(hv[l]), floats(sv[l])
		if len(h) != rows*in || len(s) != rows*dout {
			return nil, fmt.Errorf("gorgonia: layer %d: %d activations and %d output gradients for %d examples", l+1, len(h), len(s), rows)
		}
		a := make([]float64, rows*din)
		for i := range rows {
			copy(a[i*din:], h[i*in:(i+1)*in])
			a[i*din+in] = 1
		}
		out.Batch.Layers = append(out.Batch.Layers, gradients.Layer{
			Name: fmt.Sprintf("fc%d", l+1), DIn: din, DOut: dout, Tokens: 1,
			A: a, S: s,
		})
		// ∂L/∂w is in × out and ∂L/∂b has out entries: transpose into
		// goinfluence's DOut × DIn with the bias last.
		gw, err := gr.ws[l].Grad()
		if err != nil {
			return nil, fmt.Errorf("gorgonia: layer %d: weight gradient: %w", l+1, err)
		}
		gb, err := gr.bs[l].Grad()
		if err != nil {
			return nil, fmt.Errorf("gorgonia: layer %d: bias gradient: %w", l+1, err)
		}
		wv, bv := gw.Data().([]float64), gb.Data().([]float64)
		g := make([]float64, dout*din)
		for o := range dout {
			for i := range in {
				g[o*din+i] = wv[i*dout+o]
			}
			g[o*din+in] = bv[o]
		}
		out.Weight = append(out.Weight, g)
	}
	return out, nil
}

// values returns the float64 data of a node's value; only for nodes
// whose memory the tape machine does not reuse (inputs, parameters).
func values(n *G.Node) []float64 { return floats(n.Value()) }

// floats returns the float64 data of a value (a scalar as one element).
func floats(v G.Value) []float64 {
	switch d := v.Data().(type) {
	case []float64:
		return d
	case float64:
		return []float64{d}
	}
	panic(fmt.Sprintf("value holds %T, not float64", v.Data()))
}

func clone(v []float64) []float64 { return append([]float64(nil), v...) }
