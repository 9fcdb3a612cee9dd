//go:build !((linux || darwin) && (amd64 || arm64))

package linalg

// purego cannot load OpenBLAS on this platform, so no "openblas" backend is
// registered here and Auto falls back to the others.
