//go:build linux && (amd64 || arm64)

package cuda

import (
	"github.com/ebitengine/purego"
)

// The NVIDIA libraries are loaded at run time with purego, so the package
// builds with CGO_ENABLED=0 and without the CUDA toolkit.

func dlopen(name string) (uintptr, error) {
	return purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_LOCAL)
}

func dlsym(h uintptr, name string) (uintptr, error) { return purego.Dlsym(h, name) }

func dlclose(h uintptr) { purego.Dlclose(h) }

// bindFunc makes the Go function pointed to by fptr call the C function at
// addr.
func bindFunc(fptr any, addr uintptr) { purego.RegisterFunc(fptr, addr) }
