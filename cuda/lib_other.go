//go:build !(linux && (amd64 || arm64))

package cuda

import (
	"errors"
	"runtime"
)

// NVIDIA's libraries are loaded only on 64-bit Linux; elsewhere Open fails
// with ErrLibraryNotFound and linalg.Auto picks another backend.

var errPlatform = errors.New("not supported on " + runtime.GOOS + "/" + runtime.GOARCH)

func dlopen(name string) (uintptr, error)           { return 0, errPlatform }
func dlsym(h uintptr, name string) (uintptr, error) { return 0, errPlatform }
func dlclose(h uintptr)                             {}
func bindFunc(fptr any, addr uintptr)               { panic("cuda: bindFunc on an unsupported platform") }
