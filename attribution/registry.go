package attribution

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/goinfluence/goinfluence/internal/atomicfile"
)

// Registration is one training example's entry in a registry.
type Registration struct {
	ID            int64
	Contributor   string
	DataNet       string
	ContentSHA256 string // lower-case hex of the example's content, or "" when not given
}

// MaxNameBytes is the longest contributor or DataNet id a registry accepts,
// in bytes of UTF-8.
const MaxNameBytes = 256

// Registry maps training example ids to the contributor and the DataNet they
// belong to (DESIGN §12). It does not change once read, and its methods are
// safe for concurrent use.
//
// A registry is a CSV file or a JSON Lines file; ReadRegistry and
// ParseRegistry tell which by the first byte that is not white space: '{'
// means JSON Lines, anything else CSV. A leading UTF-8 byte order mark is
// skipped.
//
// CSV: a header line, exactly
//
//	id,contributor,datanet
//
// or
//
//	id,contributor,datanet,content_sha256
//
// then one record per example with as many fields as the header (RFC 4180
// quoting, as encoding/csv reads it; empty lines are skipped).
//
// JSON Lines: one object per line with the keys "id" (a JSON integer),
// "contributor" and "datanet" (strings) and optionally "content_sha256" (a
// string); no other keys, no key twice. Lines of white space only are
// skipped. A registry with no example at all is written as a CSV header.
//
// In both forms: ids are decimal integers in the int64 range (an optional
// '-', then digits) and unique; contributor and DataNet ids are non-empty,
// valid UTF-8, at most MaxNameBytes bytes, with no control character and no
// white space at either end; content_sha256, when not empty, is 64
// lower-case hexadecimal digits (an empty value means not given).
type Registry struct {
	name         string
	regs         []Registration // ascending by ID
	index        map[int64]int  // ID → position in regs
	contributors []string       // sorted, unique
	byContent    map[string][]int64
}

// ErrRegistry is the cause, matched with errors.Is, of every error that
// ReadRegistry and ParseRegistry return for a malformed registry.
var ErrRegistry = errors.New("bad registry")

// ErrNotRegistered is the cause, matched with errors.Is, of the error that
// CheckIDs returns for an example id the registry does not have.
var ErrNotRegistered = errors.New("not registered")

// Error describes a problem with a registry and where it is: the file, the
// line (1-based; 0 when the problem is not on one line) and the field
// ("id", "contributor", "datanet", "content_sha256" or "header"; "" when the
// problem is not in one field).
type Error struct {
	File  string
	Line  int
	Field string
	Err   error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("registry")
	if e.File != "" {
		b.WriteString(" ")
		b.WriteString(e.File)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ": line %d", e.Line)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %s", e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ReadRegistry reads the registry file at path; see Registry for the formats.
// Errors in the file are *Error values naming path, with ErrRegistry as their
// cause.
func ReadRegistry(path string) (*Registry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseRegistry(f, path)
}

// ParseRegistry reads a registry from r; see Registry for the formats. name
// stands for the source in errors, which are *Error values with ErrRegistry
// as their cause when the registry is malformed and the reader's error as
// their cause when reading fails.
func ParseRegistry(r io.Reader, name string) (*Registry, error) {
	const peek = 64 << 10
	br := bufio.NewReaderSize(r, peek)
	head, _ := br.Peek(peek) // a read error shows again on the next read
	if bytes.HasPrefix(head, []byte("\uFEFF")) {
		br.Discard(3)
		head = head[3:]
	}
	p := &parser{name: name, index: make(map[int64]int)}
	var err error
	if i := bytes.IndexFunc(head, func(r rune) bool { return !isSpace(r) }); i >= 0 && head[i] == '{' {
		err = p.jsonLines(br)
	} else {
		err = p.csv(br)
	}
	if err != nil {
		return nil, err
	}
	return p.registry(), nil
}

// WriteRegistry writes regs, in the order given, to path as a registry CSV
// with the header id,contributor,datanet,content_sha256 (an empty
// content_sha256 where none is given), quoting a field only where
// encoding/csv must, and replaces path atomically: run manifests hash the
// file. It writes nothing for registrations that ReadRegistry would refuse;
// the error is then an *Error naming path and the line the registration
// would be on, with ErrRegistry as its cause.
func WriteRegistry(path string, regs []Registration) error {
	p := &parser{name: path, index: make(map[int64]int, len(regs))}
	for i, g := range regs {
		if err := p.check(g, i+2); err != nil {
			return err
		}
	}
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		cw := csv.NewWriter(w) // a failed Write shows in cw.Error
		cw.Write(csvHeader)
		for _, g := range regs {
			cw.Write([]string{strconv.FormatInt(g.ID, 10), g.Contributor, g.DataNet, g.ContentSHA256})
		}
		cw.Flush()
		return cw.Error()
	})
}

// Lookup returns the registration of example id, and whether there is one.
func (r *Registry) Lookup(id int64) (Registration, bool) {
	i, ok := r.index[id]
	if !ok {
		return Registration{}, false
	}
	return r.regs[i], true
}

// Len returns the number of registered examples.
func (r *Registry) Len() int { return len(r.regs) }

// IDs returns the registered example ids in ascending order.
func (r *Registry) IDs() []int64 {
	ids := make([]int64, len(r.regs))
	for i, g := range r.regs {
		ids[i] = g.ID
	}
	return ids
}

// CheckIDs returns nil when every id in ids is registered, and otherwise an
// *Error naming the first that is not, with cause ErrNotRegistered.
func (r *Registry) CheckIDs(ids []int64) error {
	for _, id := range ids {
		if _, ok := r.index[id]; !ok {
			return &Error{File: r.name, Err: fmt.Errorf("example %d: %w", id, ErrNotRegistered)}
		}
	}
	return nil
}

// Contributors returns the ids of the contributors in the registry, sorted
// (by bytes) and without repeats.
func (r *Registry) Contributors() []string { return slices.Clone(r.contributors) }

// SameContent returns, in ascending order, the ids of the examples registered
// with the same content hash as example id, id included. It returns nil when
// id is not registered or was registered without a content hash.
func (r *Registry) SameContent(id int64) []int64 {
	i, ok := r.index[id]
	if !ok || r.regs[i].ContentSHA256 == "" {
		return nil
	}
	return slices.Clone(r.byContent[r.regs[i].ContentSHA256])
}

// largestContentGroup returns the most examples registered with one
// content hash, at least 1.
func (r *Registry) largestContentGroup() int {
	n := 1
	for _, ids := range r.byContent {
		n = max(n, len(ids))
	}
	return n
}

// parser accumulates the registrations of one file, checking each.
type parser struct {
	name  string
	regs  []Registration
	index map[int64]int // ID → line, while parsing
}

// malformed is the cause of a parse error: a message that matches
// ErrRegistry, and the error found by a lower layer, if any.
type malformed struct {
	msg string
	err error
}

func (e *malformed) Error() string {
	if e.err == nil {
		return e.msg
	}
	if e.msg == "" {
		return e.err.Error()
	}
	return e.msg + ": " + e.err.Error()
}

func (e *malformed) Is(target error) bool { return target == ErrRegistry }

func (e *malformed) Unwrap() error { return e.err }

// errorf returns an *Error about line and field with a malformed cause.
func (p *parser) errorf(line int, field, format string, args ...any) error {
	return &Error{File: p.name, Line: line, Field: field, Err: &malformed{msg: fmt.Sprintf(format, args...)}}
}

var csvHeader = []string{"id", "contributor", "datanet", "content_sha256"}

func (p *parser) csv(r io.Reader) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return p.errorf(1, "header", "missing: want %q", strings.Join(csvHeader, ","))
	}
	if err != nil {
		return p.readError(err)
	}
	line, _ := cr.FieldPos(0)
	if n := len(header); n < 3 || n > 4 {
		return p.errorf(line, "header", "%d columns, want id,contributor,datanet[,content_sha256]", n)
	}
	for i, h := range header {
		if h != csvHeader[i] {
			return p.errorf(line, "header", "column %d is %q, want %q", i+1, h, csvHeader[i])
		}
	}
	cols := len(header)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return p.readError(err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != cols {
			return p.errorf(line, "", "%d fields, want %d", len(rec), cols)
		}
		for i, f := range rec {
			if !utf8.ValidString(f) {
				return p.errorf(line, csvHeader[i], "invalid UTF-8")
			}
		}
		id, err := parseID(rec[0])
		if err != nil {
			return p.errorf(line, "id", "%v", err)
		}
		g := Registration{ID: id, Contributor: rec[1], DataNet: rec[2]}
		if cols == 4 {
			g.ContentSHA256 = rec[3]
		}
		if err := p.add(g, line); err != nil {
			return err
		}
	}
}

// readError maps an error of encoding/csv to an *Error: a syntax error to the
// line it is on, with ErrRegistry as its cause; a read error as it is.
func (p *parser) readError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &Error{File: p.name, Line: pe.Line, Err: &malformed{msg: fmt.Sprintf("column %d", pe.Column), err: pe.Err}}
	}
	return &Error{File: p.name, Err: err}
}

func (p *parser) jsonLines(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(bytes.TrimFunc(b, isSpace)) == 0 {
			continue
		}
		if !utf8.Valid(b) {
			return p.errorf(line, "", "invalid UTF-8")
		}
		g, field, err := parseObject(b)
		if err != nil {
			return &Error{File: p.name, Line: line, Field: field, Err: &malformed{err: err}}
		}
		if err := p.add(g, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return p.errorf(line+1, "", "line longer than 1 MiB")
		}
		return &Error{File: p.name, Err: err}
	}
	return nil
}

// parseObject parses one JSON Lines record, returning the field at fault
// with an error.
func parseObject(b []byte) (g Registration, field string, err error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return g, "", errors.New("not a JSON object")
	}
	next := func() (json.Token, error) {
		t, err := dec.Token()
		if err == io.EOF {
			err = errors.New("unexpected end of line")
		}
		return t, err
	}
	var seen [4]bool
	for dec.More() {
		t, err := next()
		if err != nil {
			return g, "", err
		}
		key := t.(string) // json.Decoder returns keys as strings
		k := slices.Index(csvHeader, key)
		if k < 0 {
			return g, "", fmt.Errorf("unknown field %q", key)
		}
		if seen[k] {
			return g, key, errors.New("repeated")
		}
		seen[k] = true
		v, err := next()
		if err != nil {
			return g, key, err
		}
		if k == 0 {
			n, ok := v.(json.Number)
			if !ok {
				return g, key, errors.New("not a JSON integer")
			}
			if g.ID, err = parseID(string(n)); err != nil {
				return g, key, err
			}
			continue
		}
		s, ok := v.(string)
		if !ok {
			return g, key, errors.New("not a JSON string")
		}
		switch k {
		case 1:
			g.Contributor = s
		case 2:
			g.DataNet = s
		case 3:
			g.ContentSHA256 = s
		}
	}
	if _, err := next(); err != nil { // the closing brace
		return g, "", err
	}
	if _, err := dec.Token(); err != io.EOF {
		return g, "", errors.New("data after the object")
	}
	for k, ok := range seen[:3] {
		if !ok {
			return g, csvHeader[k], errors.New("missing")
		}
	}
	return g, "", nil
}

// parseID parses a decimal int64: an optional '-', then digits.
func parseID(s string) (int64, error) {
	if strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%s is out of the int64 range", s)
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	return id, nil
}

// add checks g, found on line, and keeps it.
func (p *parser) add(g Registration, line int) error {
	if err := p.check(g, line); err != nil {
		return err
	}
	p.regs = append(p.regs, g)
	return nil
}

// check checks g, found on line, and notes its id.
func (p *parser) check(g Registration, line int) error {
	if err := checkName(g.Contributor); err != nil {
		return p.errorf(line, "contributor", "%v", err)
	}
	if err := checkName(g.DataNet); err != nil {
		return p.errorf(line, "datanet", "%v", err)
	}
	if g.ContentSHA256 != "" && !isSHA256Hex(g.ContentSHA256) {
		return p.errorf(line, "content_sha256", "%q is not 64 lower-case hex digits", g.ContentSHA256)
	}
	if first, ok := p.index[g.ID]; ok {
		return p.errorf(line, "id", "duplicate id %d (first on line %d)", g.ID, first)
	}
	p.index[g.ID] = line
	return nil
}

// checkName checks a contributor or DataNet id.
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case !utf8.ValidString(s):
		return errors.New("invalid UTF-8")
	case len(s) > MaxNameBytes:
		return fmt.Errorf("%d bytes, more than %d", len(s), MaxNameBytes)
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %U at byte %d", r, i)
		}
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return fmt.Errorf("%q has white space at an end", s)
	}
	return nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }

// registry builds the Registry from the parsed registrations.
func (p *parser) registry() *Registry {
	regs := p.regs
	slices.SortFunc(regs, func(a, b Registration) int { return cmp.Compare(a.ID, b.ID) })
	r := &Registry{name: p.name, regs: regs, index: p.index, byContent: make(map[string][]int64)}
	for i, g := range regs {
		r.index[g.ID] = i
		r.contributors = append(r.contributors, g.Contributor)
		if g.ContentSHA256 != "" {
			r.byContent[g.ContentSHA256] = append(r.byContent[g.ContentSHA256], g.ID)
		}
	}
	slices.Sort(r.contributors)
	r.contributors = slices.Compact(r.contributors)
	return r
}
