# goinfluence — see README.md.
GO ?= go
FUZZTIME ?= 30s

.PHONY: test lint bench fuzz validate demo

# The tests, on the best backend present (OpenBLAS when installed) and again
# on the pure-Go path built without cgo, as users without OpenBLAS run it.
test: lint
	CGO_ENABLED=0 $(GO) build ./...
	$(GO) test -count=1 ./...
	CGO_ENABLED=0 GOINFLUENCE_BACKEND=cpu $(GO) test -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Benchmarks: GEMM rates of every backend, recorded in bench/results/.
bench:
	bash bench/run.sh

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/safetensors
	$(GO) test -run '^$$' -fuzz '^FuzzParseGradients$$' -fuzztime $(FUZZTIME) ./gradients
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./ekfac
	$(GO) test -run '^$$' -fuzz '^FuzzManifest$$' -fuzztime $(FUZZTIME) ./gradients/store

# Leave-one-out validation on both built-in data sets, with plots.
validate:
	$(GO) run ./cmd/goinfluence validate loo --dataset breast-cancer --plot docs/loo-breast-cancer.png
	$(GO) run ./cmd/goinfluence validate loo --dataset digits --plot docs/loo-digits.png

demo:
	$(GO) run ./cmd/goinfluence demo
