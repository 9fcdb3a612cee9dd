// Service serves attribution over HTTP: one StoreScorer, opened once over a
// projected store of the training gradients of softmax regression on the
// digits, answers every request, from as many goroutines as net/http runs.
// POST /attribute {"pixels": [64 values in 0..16], "label": 3} returns the
// most helpful and most harmful training digits.
//
//	go run ./examples/service -addr localhost:8080
//	go run ./examples/service -selftest 16   # 16 concurrent requests, then exit
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

type request struct {
	Pixels []float64 `json:"pixels"`
	Label  int       `json:"label"`
}

// attribution serves POST /attribute with the scorer and the model that
// gives the query gradients.
func attribution(scorer *influence.StoreScorer, m models.Model) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Pixels) != 64 || req.Label < 0 || req.Label > 9 {
			http.Error(w, "want {\"pixels\": [64 values in 0..16], \"label\": 0..9}", http.StatusBadRequest)
			return
		}
		x := linalg.NewDense64(1, 64, nil)
		for i, v := range req.Pixels {
			x.Data[i] = v / 16
		}
		res, err := scorer.Score(r.Context(), m.Gradients(x, []int{req.Label}))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(res.Rankings[0])
	}
}

func main() {
	addr := flag.String("addr", "localhost:8080", "address to serve on")
	selftest := flag.Int("selftest", 0, "send this many concurrent requests to an in-process server and exit")
	flag.Parse()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "goinfluence-service")
	check(err)
	defer os.RemoveAll(dir)
	scorer, m, test := setup(ctx, dir)
	mux := http.NewServeMux()
	mux.Handle("POST /attribute", attribution(scorer, m))
	if *selftest == 0 {
		log.Fatal(http.ListenAndServe(*addr, mux))
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	var wg sync.WaitGroup
	answers := make([]string, *selftest)
	for i := range answers {
		wg.Go(func() {
			pixels := make([]float64, 64)
			for j := range pixels {
				pixels[j] = 16 * test.X.At(i%test.Len(), j)
			}
			body, _ := json.Marshal(request{Pixels: pixels, Label: test.Y[i%test.Len()]})
			resp, err := http.Post(srv.URL+"/attribute", "application/json", strings.NewReader(string(body)))
			if err != nil {
				log.Fatal(err)
			}
			defer resp.Body.Close()
			var r influence.Ranking
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
				log.Fatalf("request %d: status %s: %v", i, resp.Status, err)
			}
			answers[i] = fmt.Sprintf("request %2d: most helpful id %4d (%+.3g), most harmful id %4d (%+.3g)",
				i, r.Helpful[0].ID, r.Helpful[0].Score, r.Harmful[0].ID, r.Harmful[0].Score)
		})
	}
	wg.Wait()
	fmt.Println(strings.Join(answers, "\n"))
}

// setup trains the model, builds the store of its training gradients
// (Rademacher projection to 256 dimensions) and opens the scorer, with the
// raw projected Hessian as preconditioner.
func setup(ctx context.Context, dir string) (*influence.StoreScorer, models.Model, *datasets.Dataset) {
	train, test, err := datasets.LoadSplit(ctx, "digits", datasets.SplitOptions{})
	check(err)
	m := models.NewSoftmax(64, 10, 1e-2)
	_, err = models.FitNewton(ctx, m, train.X, train.Y, nil, models.NewtonOptions{})
	check(err)
	file := filepath.Join(dir, "train.safetensors")
	check(gradients.WriteFile(file, m.Gradients(train.X, train.Y), gradients.F32, nil))
	src, err := store.OpenSource(file)
	check(err)
	defer src.Close()
	spec := gradients.Projection{Kind: gradients.Rademacher, K: 256, Seed: 1}
	_, err = store.Build(ctx, filepath.Join(dir, "store"), src, spec, store.BuildOptions{})
	check(err)
	s, err := store.Open(filepath.Join(dir, "store"))
	check(err)
	scorer, err := influence.OpenStoreScorer(ctx, nil, influence.StoreScorerOptions{
		Stores: []*store.Store{s},
		Method: influence.StoreRawHessian{Damping: hessian.Damping{Heuristic: true}},
		TopK:   3,
	})
	check(err)
	return scorer, m, test
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
