package attribution

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const (
	hashA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	hashB = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
)

func TestParseRegistry(t *testing.T) {
	want := []Registration{
		{ID: -4, Contributor: "bob", DataNet: "legal", ContentSHA256: hashA},
		{ID: 3, Contributor: "alice", DataNet: "medical"},
		{ID: 12, Contributor: "Zoë, MD", DataNet: "medical", ContentSHA256: hashA},
		{ID: 40, Contributor: "bob", DataNet: "medical", ContentSHA256: hashB},
	}
	for _, tc := range []struct {
		name, in string
	}{
		{"csv", "id,contributor,datanet,content_sha256\n" +
			"12,\"Zoë, MD\",medical," + hashA + "\n" +
			"3,alice,medical,\n" +
			"\n" +
			"40,bob,medical," + hashB + "\r\n" +
			"-4,bob,legal," + hashA},
		{"csv with BOM", "\uFEFFid,contributor,datanet,content_sha256\n" +
			"12,\"Zoë, MD\",medical," + hashA + "\n" +
			"3,alice,medical,\n" +
			"40,bob,medical," + hashB + "\n" +
			"-4,bob,legal," + hashA + "\n"},
		{"jsonl", "\n  {\"id\": 12, \"contributor\": \"Zo\\u00eb, MD\", \"datanet\": \"medical\", \"content_sha256\": \"" + hashA + "\"}\n" +
			"{\"datanet\":\"medical\",\"contributor\":\"alice\",\"id\":3}\r\n" +
			"   \n" +
			"{\"id\": 40, \"contributor\": \"bob\", \"datanet\": \"medical\", \"content_sha256\": \"" + hashB + "\"}\n" +
			"{\"id\": -4, \"contributor\": \"bob\", \"datanet\": \"legal\", \"content_sha256\": \"" + hashA + "\"}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRegistry(strings.NewReader(tc.in), "reg")
			if err != nil {
				t.Fatal(err)
			}
			if r.Len() != len(want) {
				t.Fatalf("Len = %d, want %d", r.Len(), len(want))
			}
			for _, g := range want {
				if got, ok := r.Lookup(g.ID); !ok || got != g {
					t.Errorf("Lookup(%d) = %+v, %v; want %+v", g.ID, got, ok, g)
				}
			}
			if _, ok := r.Lookup(5); ok {
				t.Error("Lookup(5) found an unregistered id")
			}
			if got := r.IDs(); !reflect.DeepEqual(got, []int64{-4, 3, 12, 40}) {
				t.Errorf("IDs = %v", got)
			}
			if got := r.Contributors(); !reflect.DeepEqual(got, []string{"Zoë, MD", "alice", "bob"}) {
				t.Errorf("Contributors = %q", got)
			}
			if got := r.SameContent(12); !reflect.DeepEqual(got, []int64{-4, 12}) {
				t.Errorf("SameContent(12) = %v", got)
			}
			if got := r.SameContent(40); !reflect.DeepEqual(got, []int64{40}) {
				t.Errorf("SameContent(40) = %v", got)
			}
			if got := r.SameContent(3); got != nil {
				t.Errorf("SameContent(3) = %v, want nil (no hash)", got)
			}
			if got := r.SameContent(5); got != nil {
				t.Errorf("SameContent(5) = %v, want nil (not registered)", got)
			}
			if err := r.CheckIDs([]int64{40, 3, -4}); err != nil {
				t.Errorf("CheckIDs: %v", err)
			}
			err = r.CheckIDs([]int64{40, 7, 8})
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrNotRegistered) || errors.Is(err, ErrRegistry) || !strings.Contains(err.Error(), "example 7:") {
				t.Errorf("CheckIDs error %v: want an *Error naming example 7, cause ErrNotRegistered", err)
			}
			if got, want := err.Error(), "registry reg: example 7: not registered"; got != want {
				t.Errorf("CheckIDs error %q, want %q", got, want)
			}
		})
	}
}

func TestParseRegistryEmpty(t *testing.T) {
	for _, in := range []string{"id,contributor,datanet\n", "id,contributor,datanet,content_sha256"} {
		r, err := ParseRegistry(strings.NewReader(in), "reg")
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if r.Len() != 0 || len(r.IDs()) != 0 || len(r.Contributors()) != 0 {
			t.Errorf("%q: Len %d, IDs %v, Contributors %v; want none", in, r.Len(), r.IDs(), r.Contributors())
		}
		if r.CheckIDs(nil) != nil || r.CheckIDs([]int64{0}) == nil {
			t.Errorf("%q: CheckIDs wrong on an empty registry", in)
		}
	}
}

func TestParseRegistryErrors(t *testing.T) {
	const head = "id,contributor,datanet\n"
	long := strings.Repeat("é", MaxNameBytes/2) + "x"
	for _, tc := range []struct {
		name  string
		in    string
		line  int
		field string
		msg   string
	}{
		{"empty file", "", 1, "header", "missing"},
		{"blank file", "\n\n", 1, "header", "missing"},
		{"short header", "id,contributor\n1,a\n", 1, "header", "2 columns"},
		{"long header", "id,contributor,datanet,content_sha256,x\n", 1, "header", "5 columns"},
		{"unknown column", "id,owner,datanet\n", 1, "header", `column 2 is "owner", want "contributor"`},
		{"columns out of order", "id,datanet,contributor\n", 1, "header", "column 2"},
		{"header case", "ID,contributor,datanet\n", 1, "header", "column 1"},
		{"header after blank lines", "\n\nid,contributor\n", 3, "header", "2 columns"},
		{"too few fields", head + "1,a,b\n2,a\n", 3, "", "2 fields, want 3"},
		{"too many fields", head + "1,a,b,c\n", 2, "", "4 fields, want 3"},
		{"empty contributor", head + "1,a,b\n2,,b\n", 3, "contributor", "empty"},
		{"empty datanet", head + "1,a,\n", 2, "datanet", "empty"},
		{"id not integer", head + "x,a,b\n", 2, "id", "not an integer"},
		{"id float", head + "1.5,a,b\n", 2, "id", "not an integer"},
		{"id plus", head + "+1,a,b\n", 2, "id", "not an integer"},
		{"id spaces", head + " 1,a,b\n", 2, "id", "not an integer"},
		{"id empty", head + ",a,b\n", 2, "id", "not an integer"},
		{"id too large", head + "9223372036854775808,a,b\n", 2, "id", "out of the int64 range"},
		{"id too small", head + "-9223372036854775809,a,b\n", 2, "id", "out of the int64 range"},
		{"duplicate id", head + "1,a,b\n2,a,b\n\n1,c,d\n", 5, "id", "duplicate id 1 (first on line 2)"},
		{"hash short", "id,contributor,datanet,content_sha256\n1,a,b,abc\n", 2, "content_sha256", "64 lower-case hex"},
		{"hash upper", "id,contributor,datanet,content_sha256\n1,a,b," + strings.ToUpper(hashA) + "\n", 2, "content_sha256", "64 lower-case hex"},
		{"hash not hex", "id,contributor,datanet,content_sha256\n1,a,b," + strings.Repeat("g", 64) + "\n", 2, "content_sha256", "64 lower-case hex"},
		{"invalid utf-8", head + "1,a\xff,b\n", 2, "contributor", "invalid UTF-8"},
		{"invalid utf-8 datanet", head + "1,a,\xc3\n", 2, "datanet", "invalid UTF-8"},
		{"too long", head + "1," + long + ",b\n", 2, "contributor", "257 bytes, more than 256"},
		{"too long datanet", head + "1,a," + long + "\n", 2, "datanet", "257 bytes"},
		{"control character", head + "1,a\tb,b\n", 2, "contributor", "control character U+0009"},
		{"newline in quotes", head + "1,\"a\nb\",b\n", 2, "contributor", "control character U+000A"},
		{"C1 control", head + "1,a,b\u0085c\n", 2, "datanet", "control character U+0085"},
		{"surrounding space", head + "1,alice ,b\n", 2, "contributor", "white space"},
		{"csv syntax", head + "1,a,b\n2,\"a\"x,b\n", 3, "", `extraneous or missing " in quoted-field`},
		{"csv bare quote", head + "1,a\"b,c\n", 2, "", `bare " in non-quoted-field`},

		{"json not object", "{\"id\":1,\"contributor\":\"a\",\"datanet\":\"b\"}\n[1]\n", 2, "", "not a JSON object"},
		{"json syntax", "{\"id\":1,\"contributor\":\"a\",\"datanet\":\"b\"}\n{\"id\":2,\n", 2, "", "unexpected end"},
		{"json trailing", "{\"id\":1,\"contributor\":\"a\",\"datanet\":\"b\"} {}\n", 1, "", "data after the object"},
		{"json unknown field", "{\"id\":1,\"contributor\":\"a\",\"datanet\":\"b\",\"owner\":\"c\"}\n", 1, "", `unknown field "owner"`},
		{"json repeated field", "{\"id\":1,\"id\":2,\"contributor\":\"a\",\"datanet\":\"b\"}\n", 1, "id", "repeated"},
		{"json missing id", "{\"contributor\":\"a\",\"datanet\":\"b\"}\n", 1, "id", "missing"},
		{"json missing contributor", "{\"id\":1,\"datanet\":\"b\"}\n", 1, "contributor", "missing"},
		{"json missing datanet", "{\"id\":1,\"contributor\":\"a\"}\n", 1, "datanet", "missing"},
		{"json id string", "{\"id\":\"1\",\"contributor\":\"a\",\"datanet\":\"b\"}\n", 1, "id", "not a JSON integer"},
		{"json id float", "{\"id\":1.0,\"contributor\":\"a\",\"datanet\":\"b\"}\n", 1, "id", "not an integer"},
		{"json id exponent", "{\"id\":1e3,\"contributor\":\"a\",\"datanet\":\"b\"}\n", 1, "id", "not an integer"},
		{"json id null", "{\"id\":null,\"contributor\":\"a\",\"datanet\":\"b\"}\n", 1, "id", "not a JSON integer"},
		{"json id too large", "{\"id\":99999999999999999999,\"contributor\":\"a\",\"datanet\":\"b\"}\n", 1, "id", "out of the int64 range"},
		{"json contributor number", "{\"id\":1,\"contributor\":7,\"datanet\":\"b\"}\n", 1, "contributor", "not a JSON string"},
		{"json datanet object", "{\"id\":1,\"contributor\":\"a\",\"datanet\":{}}\n", 1, "datanet", "not a JSON string"},
		{"json hash null", "{\"id\":1,\"contributor\":\"a\",\"datanet\":\"b\",\"content_sha256\":null}\n", 1, "content_sha256", "not a JSON string"},
		{"json empty contributor", "{\"id\":1,\"contributor\":\"\",\"datanet\":\"b\"}\n", 1, "contributor", "empty"},
		{"json control escape", "{\"id\":1,\"contributor\":\"a\\u0000\",\"datanet\":\"b\"}\n", 1, "contributor", "control character U+0000"},
		{"json invalid utf-8", "{\"id\":1,\"contributor\":\"a\xff\",\"datanet\":\"b\"}\n", 1, "", "invalid UTF-8"},
		{"json too long", "{\"id\":1,\"contributor\":\"" + long + "\",\"datanet\":\"b\"}\n", 1, "contributor", "257 bytes"},
		{"json bad hash", "{\"id\":1,\"contributor\":\"a\",\"datanet\":\"b\",\"content_sha256\":\"x\"}\n", 1, "content_sha256", "64 lower-case hex"},
		{"json duplicate id", "{\"id\":1,\"contributor\":\"a\",\"datanet\":\"b\"}\n\n{\"id\":1,\"contributor\":\"a\",\"datanet\":\"b\"}\n", 3, "id", "duplicate id 1 (first on line 1)"},
		{"json csv line", "{\"id\":1,\"contributor\":\"a\",\"datanet\":\"b\"}\nid,contributor,datanet\n", 2, "", "not a JSON object"},
		{"json line too long", "{\"id\":1,\"contributor\":\"a\",\"datanet\":\"b\"}\n{" + strings.Repeat(" ", 2<<20) + "}\n", 2, "", "longer than 1 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRegistry(strings.NewReader(tc.in), "reg.csv")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v, want an *Error", err)
			}
			if !errors.Is(err, ErrRegistry) {
				t.Errorf("error %v does not match ErrRegistry", err)
			}
			if e.File != "reg.csv" || e.Line != tc.line || e.Field != tc.field || !strings.Contains(e.Err.Error(), tc.msg) {
				t.Errorf("error %q: file %q, line %d, field %q; want reg.csv, line %d, field %q, message with %q",
					err, e.File, e.Line, e.Field, tc.line, tc.field, tc.msg)
			}
		})
	}
}

func TestRegistryErrorString(t *testing.T) {
	_, err := ParseRegistry(strings.NewReader("id,contributor,datanet\n\n1,a,b\n2,,b\n"), "reg.csv")
	if got, want := err.Error(), "registry reg.csv: line 4: field contributor: empty"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{Err: errors.New("x")}, "registry: x"},
		{Error{File: "f", Line: 2, Err: errors.New("x")}, "registry f: line 2: x"},
		{Error{Field: "id", Err: errors.New("x")}, "registry: field id: x"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestParseRegistryReadError(t *testing.T) {
	cause := errors.New("disk on fire")
	for _, in := range []string{"id,contributor,datanet\n1,a,b\n", "{\"id\":1,\"contributor\":\"a\",\"datanet\":\"b\"}\n"} {
		_, err := ParseRegistry(&failReader{data: []byte(in), err: cause}, "reg")
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, cause) || errors.Is(err, ErrRegistry) {
			t.Errorf("error %v: want an *Error with the read error as cause, not ErrRegistry", err)
		}
	}
}

// failReader returns data, then err.
type failReader struct {
	data []byte
	err  error
}

func (r *failReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadRegistry(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "reg.jsonl")
	if err := os.WriteFile(path, []byte("{\"id\": 12, \"contributor\": \"alice\", \"datanet\": \"medical\", \"content_sha256\": \""+hashA+"\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := ReadRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := r.Lookup(12); !ok || g != (Registration{12, "alice", "medical", hashA}) {
		t.Errorf("Lookup(12) = %+v, %v", g, ok)
	}
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("id,contributor,datanet\n1,a,b\n1,a,b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadRegistry(bad)
	var e *Error
	if !errors.As(err, &e) || e.File != bad || e.Line != 3 {
		t.Errorf("error %v: want an *Error naming %s line 3", err, bad)
	}
	if _, err := ReadRegistry(filepath.Join(dir, "absent.csv")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v for a missing file, want os.ErrNotExist", err)
	}
}

func TestRegistryCopies(t *testing.T) {
	r, err := ParseRegistry(strings.NewReader("id,contributor,datanet,content_sha256\n1,a,x,"+hashA+"\n2,b,x,"+hashA+"\n"), "reg")
	if err != nil {
		t.Fatal(err)
	}
	r.IDs()[0] = 99
	r.Contributors()[0] = "z"
	r.SameContent(1)[0] = 99
	if !reflect.DeepEqual(r.IDs(), []int64{1, 2}) || !reflect.DeepEqual(r.Contributors(), []string{"a", "b"}) || !reflect.DeepEqual(r.SameContent(2), []int64{1, 2}) {
		t.Error("changing a returned slice changed the registry")
	}
}

func TestWriteRegistry(t *testing.T) {
	dir := t.TempDir()
	regs := []Registration{
		{ID: 12, Contributor: "Zoë, MD", DataNet: "medical", ContentSHA256: hashA},
		{ID: 3, Contributor: "alice", DataNet: "medical"},
		{ID: -4, Contributor: `bob "b"`, DataNet: "legal", ContentSHA256: hashB},
	}
	path := filepath.Join(dir, "reg.csv")
	if err := WriteRegistry(path, regs); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "id,contributor,datanet,content_sha256\n" +
		"12,\"Zoë, MD\",medical," + hashA + "\n" +
		"3,alice,medical,\n" +
		"-4,\"bob \"\"b\"\"\",legal," + hashB + "\n"
	if string(b) != want {
		t.Errorf("wrote\n%s\nwant\n%s", b, want)
	}
	r, err := ReadRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != len(regs) {
		t.Fatalf("read back %d registrations, want %d", r.Len(), len(regs))
	}
	for _, g := range regs {
		if got, ok := r.Lookup(g.ID); !ok || got != g {
			t.Errorf("read back Lookup(%d) = %+v, %v; want %+v", g.ID, got, ok, g)
		}
	}

	empty := filepath.Join(dir, "empty.csv")
	if err := WriteRegistry(empty, nil); err != nil {
		t.Fatal(err)
	}
	if r, err := ReadRegistry(empty); err != nil || r.Len() != 0 {
		t.Errorf("empty registry read back: %v, %v", r, err)
	}

	// What ReadRegistry would refuse is not written, and the error names
	// the line it would be on.
	for _, tc := range []struct {
		name  string
		regs  []Registration
		line  int
		field string
	}{
		{"duplicate id", []Registration{{ID: 1, Contributor: "a", DataNet: "n"}, {ID: 1, Contributor: "b", DataNet: "n"}}, 3, "id"},
		{"empty contributor", []Registration{{ID: 1, DataNet: "n"}}, 2, "contributor"},
		{"bad hash", []Registration{{ID: 1, Contributor: "a", DataNet: "n", ContentSHA256: "abc"}}, 2, "content_sha256"},
	} {
		bad := filepath.Join(dir, "bad.csv")
		err := WriteRegistry(bad, tc.regs)
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrRegistry) || e.File != bad || e.Line != tc.line || e.Field != tc.field {
			t.Errorf("%s: error %v, want an *Error naming %s, line %d, field %s", tc.name, err, bad, tc.line, tc.field)
		}
		if _, err := os.Stat(bad); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: a refused registry was written (%v)", tc.name, err)
		}
	}
}
