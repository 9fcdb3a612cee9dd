# goinfluence — see README.md.
GO ?= go
FUZZTIME ?= 30s

.PHONY: test lint bench fuzz validate demo

# The tests, on the best backend present (OpenBLAS when installed) with the
# environment as it is, then under other OpenBLAS kernels (unset,
# Haswell, Sandybridge, Prescott: scripts/test-coretypes.sh), and again on
# the pure-Go path built without cgo, as users without OpenBLAS run it. The
# store, the scorers, attribution and the service example (concurrent
# requests) run under the race detector. Last, the gorgonia example, a
# module of its own (test-gorgonia).
test: lint
	CGO_ENABLED=0 $(GO) build ./...
	$(GO) test -count=1 ./...
	$(GO) test -race -count=1 ./gradients/store ./influence ./attribution/...
	$(GO) run -race ./examples/service -selftest 8 >/dev/null
	GO=$(GO) bash scripts/test-coretypes.sh
	CGO_ENABLED=0 GOINFLUENCE_BACKEND=cpu $(GO) test -count=1 ./...
	$(MAKE) --no-print-directory test-gorgonia GO=$(GO)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Benchmarks: GEMM rates of every backend, recorded in bench/results/.
bench:
	bash bench/run.sh

# Every fuzz target in the module (scripts/fuzz.sh finds them), FUZZTIME each.
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

# Leave-one-out validation on both built-in data sets, with plots; then the
# quality table (LOO, LDS, noisy-label AUC and wall time of every method) for
# MNIST softmax regression and an MNIST MLP (CG on the MLP truncated at 100
# iterations: dattri's CG also stops at max_iter, 10 by default, without an
# error), into bench/results/quality.md
# (+ .json per model); the LOO JSON into bench/results/loo-*.json, every plot
# into bench/results/plots/. Long the first time (MNIST is fetched
# with the go command; ground truths are cached, see eval.DefaultCacheDir).
QUALITY = $(GO) run ./cmd/goinfluence validate quality --dataset mnist --plot-dir bench/results/plots
# The projected methods through f16 and i8 stores beside the same in memory
# (issue 13: exact integer scoring must not cost LDS or the top-10).
STORE_QUALITY = $(GO) run ./cmd/goinfluence validate quality --dataset mnist --model mlp --method trak-10,trak-10-f16,trak-10-i8,logra,logra-f16,logra-i8 --no-loo --no-auc
validate:
	$(GO) run ./cmd/goinfluence validate loo --dataset breast-cancer --json --plot bench/results/plots/loo-breast-cancer.png > bench/results/loo-breast-cancer.json.tmp && mv bench/results/loo-breast-cancer.json.tmp bench/results/loo-breast-cancer.json
	$(GO) run ./cmd/goinfluence validate loo --dataset digits --json --plot bench/results/plots/loo-digits.png > bench/results/loo-digits.json.tmp && mv bench/results/loo-digits.json.tmp bench/results/loo-digits.json
	$(QUALITY) --model lr --out-md bench/results/quality-mnist-lr.md --out-json bench/results/quality-mnist-lr.json
	$(QUALITY) --model mlp --iterative-max-params -1 --cg-max-iter 100 --cg-truncate --out-md bench/results/quality-mnist-mlp.md --out-json bench/results/quality-mnist-mlp.json
	$(STORE_QUALITY) --out-md bench/results/quality-mnist-mlp-store.md --out-json bench/results/quality-mnist-mlp-store.json
	{ echo "# Influence quality on MNIST"; echo; \
	  echo "Machine:$$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $$(nproc) cores; $$(date -u +%F). Reproduce: \`make validate\`."; echo; \
	  echo "## MNIST-10 softmax regression"; echo; cat bench/results/quality-mnist-lr.md; echo; \
	  echo "## MNIST MLP"; echo; cat bench/results/quality-mnist-mlp.md; echo; \
	  echo "## i8 vs f16 store (DESIGN §11)"; echo; echo "MNIST MLP, TRAK-10 and LoGra in memory and through f16 and i8 stores. Reproduce: \`$(STORE_QUALITY)\`."; echo; \
	  cat bench/results/quality-mnist-mlp-store.md; echo; \
	  cat bench/results/quality-notes.md; } > bench/results/quality.md

demo:
	$(GO) run ./cmd/goinfluence demo

# LoRA fine-tuned byte-level transformer on DataNets of Debian's fortunes
# (examples/lora-lm): train.py pre-trains, fine-tunes and exports gradients
# with $(PYTHON) (torch and numpy; cached in $(LORA_WORK)), then EK-FAC,
# identity and TRAK are measured on held-out entries, receipts written and
# one checked again by the CLI. About 5 minutes on 2 cores the first time,
# 16 s after.
PYTHON ?= /usr/bin/python3
LORA_WORK ?= $(or $(TMPDIR),/tmp)/goinfluence-lora-lm
.PHONY: lora-lm
lora-lm:
	$(GO) run ./examples/lora-lm -python $(PYTHON) -work $(LORA_WORK)
	@if [ -f $(LORA_WORK)/receipt-generated.json ]; then \
	  $(GO) run ./cmd/goinfluence verify $(LORA_WORK)/receipt-generated.json --store $(LORA_WORK)/store-i8 \
	    --registry $(LORA_WORK)/registry.csv --query $(LORA_WORK)/query-generated.safetensors \
	    --checkpoint $(LORA_WORK)/lora.pt --factors $(LORA_WORK)/factors.safetensors; fi

# Payout and record trees against OpenZeppelin's StandardMerkleTree: installs
# the pinned @openzeppelin/merkle-tree (scripts/oz-merkle, needs node and npm
# and the npm registry) and compares roots, tree arrays and proofs of random
# trees. Not part of `make test`, which must pass without node.
.PHONY: test-oz
test-oz:
	cd scripts/oz-merkle && npm ci --no-audit --no-fund
	GOINFLUENCE_OZ=1 $(GO) test -count=1 ./attribution/... -run OpenZeppelin -v

# The gorgonia interop example (examples/gorgonia, a module of its own so
# that goinfluence never depends on gorgonia): its agreement test, then the
# program's report. The first run downloads gorgonia and its dependencies
# through the module proxy.
.PHONY: test-gorgonia
test-gorgonia:
	cd examples/gorgonia && $(GO) vet ./... && $(GO) test -count=1 ./... && $(GO) run .

# The PyTorch exporter (python/goinfluence_torch.py) against torch autograd
# (per-example gradients, 1e-10) and the CLI (fit and F64 scores of every
# method against DESIGN §3 in torch float64, 1e-8). Installs python3-torch
# and python3-numpy with apt-get when /usr/bin/python3 lacks them. Not part
# of `make test`, which must pass without torch.
.PHONY: test-interop
test-interop:
	GO=$(GO) bash scripts/test-interop.sh

# GPU. `make ptx` compiles the CUDA kernels to the PTX that cuda embeds (needs
# nvcc; commit the .ptx files). `make gpu-test` cross-compiles test binaries
# and the CLI into .gpu/ for a GPU machine without Go; run each test binary
# from its package directory, e.g. (cd cuda && ../.gpu/cuda.test -test.v).
.PHONY: ptx gpu-test
NVCC ?= nvcc
GPU_TEST_PKGS ?= cuda linalg influence

ptx: $(patsubst %.cu,%.ptx,$(wildcard cuda/kernels/*.cu))

cuda/kernels/%.ptx: cuda/kernels/%.cu
	$(NVCC) -ptx -arch=compute_80 -o $@ $<

gpu-test:
	mkdir -p .gpu
	for p in $(GPU_TEST_PKGS); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) test -c -o .gpu/$$p.test ./$$p || exit 1; \
	done
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -o .gpu/goinfluence ./cmd/goinfluence
