package cuda

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

// The loader's failure paths, one per error kind, without a GPU.

func TestLoaderMissingLibrary(t *testing.T) {
	_, err := openDriver("libgoinfluence-nosuch-cuda.so.1", "libgoinfluence-nosuch-cuda.so")
	if !errors.Is(err, ErrLibraryNotFound) {
		t.Fatalf("got %v, want ErrLibraryNotFound", err)
	}
	if runtime.GOOS == "linux" && !strings.Contains(err.Error(), "libgoinfluence-nosuch-cuda.so.1") {
		t.Errorf("error %q does not name the library", err)
	}
	if _, err := openDriver(); !errors.Is(err, ErrLibraryNotFound) {
		t.Errorf("no names: got %v", err)
	}
	if _, err := openCUBLAS("libgoinfluence-nosuch-cublas.so.13"); !errors.Is(err, ErrNoCUBLAS) {
		t.Errorf("cuBLAS: got %v, want ErrNoCUBLAS", err)
	}
}

// TestLoaderMissingSymbol loads the C library, which has no cuInit.
func TestLoaderMissingSymbol(t *testing.T) {
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skip("dlopen is used on 64-bit Linux only")
	}
	_, err := openDriver("libc.so.6")
	if !errors.Is(err, ErrSymbolMissing) || !strings.Contains(err.Error(), "cuInit") {
		t.Errorf("got %v, want ErrSymbolMissing naming cuInit", err)
	}
	_, err = openCUBLAS("libc.so.6")
	if !errors.Is(err, ErrNoCUBLAS) || !errors.Is(err, ErrSymbolMissing) {
		t.Errorf("cuBLAS from libc: got %v, want ErrNoCUBLAS and ErrSymbolMissing", err)
	}
}

// TestDriverStart drives the checks after dlopen with stand-in functions.
func TestDriverStart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		init    int32
		version int32
		want    []error
	}{
		{"ok", 0, 13000, nil},
		{"no device", int32(NoDevice), 0, []error{ErrNoDevice, NoDevice}},
		{"stub library", int32(StubLibrary), 0, []error{ErrInit, StubLibrary}},
		{"driver mismatch", int32(DriverMismatch), 0, []error{ErrInit, DriverMismatch}},
		{"too old", 0, 10020, []error{ErrDriverTooOld}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &driverAPI{
				lib:                "libcuda.so.1",
				cuInit:             func(uint32) int32 { return tc.init },
				cuDriverGetVersion: func(v *int32) int32 { *v = tc.version; return 0 },
			}
			err := d.start()
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("got %v, want errors.Is %v", err, w)
				}
			}
		})
	}
	d := &driverAPI{cuDriverGetVersion: func(v *int32) int32 { *v = 10020; return 0 }, cuInit: func(uint32) int32 { return 0 }}
	if err := d.start(); err == nil || !strings.Contains(err.Error(), "CUDA 10.2, need 11.0") {
		t.Errorf("too old: message %v", err)
	}
}

// TestOpenWithoutDriver checks that Open fails cleanly, with the error of
// the first step that fails, where there is no usable GPU.
func TestOpenWithoutDriver(t *testing.T) {
	d, err := Open()
	if err == nil {
		d.Close()
		t.Skip("a GPU is present")
	}
	for _, kind := range []error{ErrLibraryNotFound, ErrSymbolMissing, ErrInit, ErrDriverTooOld, ErrNoDevice} {
		if errors.Is(err, kind) {
			t.Logf("Open: %v", err)
			if _, lerr := dlopen(driverNames[0]); lerr != nil && kind != ErrLibraryNotFound {
				t.Errorf("%s does not load, but Open says %v", driverNames[0], err)
			}
			if _, cerr := DeviceCount(); !errors.Is(cerr, kind) {
				t.Errorf("DeviceCount: %v, want the same error as Open", cerr)
			}
			return
		}
	}
	t.Errorf("Open: %v is none of the loader's errors", err)
}
