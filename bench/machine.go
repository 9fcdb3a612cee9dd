package bench

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine records where and when a benchmark ran: a ratio means little
// without the machine it was measured on, and a rate means little without
// its date. Only Date and CPUs are part of the results' JSON, as they always
// were; the rest is for the human-readable tables and bench/results/*.md.
type Machine struct {
	Date      string `json:"date"` // UTC, RFC 3339, to the second
	CPUs      int    `json:"cpus"` // runtime.NumCPU
	CPU       string `json:"-"`    // model name from /proc/cpuinfo, or ""
	GOOS      string `json:"-"`
	GOARCH    string `json:"-"`
	GoVersion string `json:"-"`
}

// ThisMachine describes the machine running it, now.
func ThisMachine() Machine {
	return Machine{
		Date:      time.Now().UTC().Format(time.RFC3339),
		CPUs:      runtime.NumCPU(),
		CPU:       cpuModel(),
		GOOS:      runtime.GOOS,
		GOARCH:    runtime.GOARCH,
		GoVersion: runtime.Version(),
	}
}

// Day returns the date of m without the time of day.
func (m Machine) Day() string {
	if len(m.Date) >= len("2006-01-02") {
		return m.Date[:len("2006-01-02")]
	}
	return m.Date
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or "" where
// there is none (not Linux, or an architecture that names it otherwise).
func cpuModel() string {
	buf, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	v, _ := procField(bytes.NewReader(buf), "model name")
	return v
}

// procField returns the value of the first "name: value" line of r whose
// name is field, with surrounding blanks removed.
func procField(r io.Reader, field string) (string, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(name) == field {
			return strings.TrimSpace(rest), true
		}
	}
	return "", false
}

// kbField returns a "kB" field of a /proc file such as /proc/self/status or
// /proc/meminfo in bytes, or 0 where there is none (not Linux).
func kbField(path, field string) int64 {
	buf, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, ok := procField(bytes.NewReader(buf), field)
	if !ok {
		return 0
	}
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0
	}
	kb, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0
	}
	return kb << 10
}
