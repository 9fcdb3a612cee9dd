//go:build !amd64 || purego

package linalg

func dot32Fast(a, b []float32, s *float32) int { return 0 }
