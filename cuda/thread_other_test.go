//go:build !linux

package cuda

func threadID() int { return 0 }
