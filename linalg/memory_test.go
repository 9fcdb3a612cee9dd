package linalg

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "0", want: 0},
		{in: "1000000", want: 1000000},
		{in: "512MiB", want: 512 << 20},
		{in: "512 mib", want: 512 << 20},
		{in: "4GiB", want: 4 << 30},
		{in: "4G", want: 4 << 30},
		{in: "1.5GiB", want: 3 << 29},
		{in: "2KB", want: 2000},
		{in: "3TB", want: 3e12},
		{in: "1TiB", want: 1 << 40},
		{in: "7B", want: 7},
		{in: "1e3", want: 1000},
		{in: "8EiB", bad: true},
		{in: "9000PiB", bad: true},
		{in: "", bad: true},
		{in: "GiB", bad: true},
		{in: "-1", bad: true},
		{in: "-1GiB", bad: true},
		{in: "+5", bad: true},
		{in: "NaN", bad: true},
		{in: "Inf", bad: true},
		{in: "0x10", bad: true},
		{in: "1_000", bad: true},
		{in: "12 apples", bad: true},
		{in: "1e300", bad: true},
		{in: "9223372036854775807", want: math.MaxInt64},
		{in: "9223372036854775807K", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseBytes(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("ParseBytes(%q) = %d, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseBytes(%q) = %d, %v, want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1 KiB"},
		{1536, "1.5 KiB"},
		{1 << 20, "1 MiB"},
		{19 << 30, "19 GiB"},
		{Float64Bytes(3000000, 3000000), "65.5 TiB"},
		{200 << 30, "200 GiB"},
		{math.MaxInt64, "8 EiB"},
	} {
		if got := FormatBytes(tc.in); got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFloat64Bytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		dims []int
		want int64
	}{
		{"scalar", nil, 8},
		{"square", []int{1000, 1000}, 8e6},
		{"zero", []int{0, 1 << 40}, 0},
		{"negative", []int{-3, 5}, 0},
		{"overflow", []int{1 << 31, 1 << 31, 1 << 31}, math.MaxInt64},
		{"just overflow", []int{1 << 60}, math.MaxInt64},
	} {
		if got := Float64Bytes(tc.dims...); got != tc.want {
			t.Errorf("%s: Float64Bytes(%v) = %d, want %d", tc.name, tc.dims, got, tc.want)
		}
	}
	if got := AddBytes(math.MaxInt64-1, 5); got != math.MaxInt64 {
		t.Errorf("AddBytes saturates at %d, got %d", int64(math.MaxInt64), got)
	}
}

func TestCheckMemory(t *testing.T) {
	if err := CheckMemory("x", "", 100, 100); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	if err := CheckMemory("x", "", math.MaxInt64, NoMemoryLimit); err != nil {
		t.Errorf("no limit: %v", err)
	}
	err := CheckMemory(`layer "fc1": covariance A`, "3000000² float64", Float64Bytes(3000000, 3000000), 19<<30)
	if !errors.Is(err, ErrMemoryLimit) {
		t.Fatalf("err = %v, want ErrMemoryLimit", err)
	}
	const want = `layer "fc1": covariance A needs 65.5 TiB (3000000² float64), over the memory limit of 19 GiB`
	if err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if d := DefaultMemoryLimit(); d <= 0 {
		t.Errorf("DefaultMemoryLimit() = %d", d)
	}
}

func TestReadMachineMemory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if got := readMemTotal(write("meminfo", "MemFree: 5 kB\nMemTotal:  16384 kB\n")); got != 16384*1024 {
		t.Errorf("readMemTotal = %d", got)
	}
	if got := readMemTotal(write("bad", "MemTotal: lots\n")); got != 0 {
		t.Errorf("readMemTotal of garbage = %d, want 0", got)
	}
	if got := readCgroupMax(write("max", "max\n")); got != 0 {
		t.Errorf("readCgroupMax(max) = %d, want 0", got)
	}
	if got := readCgroupMax(write("limit", "1073741824\n")); got != 1<<30 {
		t.Errorf("readCgroupMax = %d", got)
	}
	if got := readMemTotal(filepath.Join(dir, "absent")); got != 0 {
		t.Errorf("readMemTotal of a missing file = %d", got)
	}
}
