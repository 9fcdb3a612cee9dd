package attribution

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzParseRegistry(f *testing.F) {
	f.Add([]byte("id,contributor,datanet\n1,alice,medical\n-2,\"b, c\",legal\n"))
	f.Add([]byte("id,contributor,datanet,content_sha256\n1,alice,medical," + hashA + "\n2,bob,medical,\n3,bob,x," + hashA + "\n"))
	f.Add([]byte("id,contributor,datanet\n"))
	f.Add([]byte("id,contributor,datanet\n1,a,b\n1,a,b\n"))
	f.Add([]byte("{\"id\": 12, \"contributor\": \"alice\", \"datanet\": \"medical\", \"content_sha256\": \"" + hashB + "\"}\n{\"id\":13,\"contributor\":\"b\",\"datanet\":\"m\"}\n"))
	f.Add([]byte("{\"id\": 1e3, \"contributor\": \"\\u00e9\", \"datanet\": \"m\"}"))
	f.Add([]byte("\uFEFF  \n{\"id\":-9223372036854775808,\"contributor\":\"a\",\"datanet\":\"m\"}"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ParseRegistry(bytes.NewReader(in), "fuzz")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.File != "fuzz" || !errors.Is(err, ErrRegistry) {
				t.Fatalf("error %v is not an *Error naming the input with cause ErrRegistry", err)
			}
			return
		}
		ids := r.IDs()
		if len(ids) != r.Len() {
			t.Fatalf("%d ids, Len %d", len(ids), r.Len())
		}
		contributors := make(map[string]bool)
		for i, id := range ids {
			if i > 0 && ids[i-1] >= id {
				t.Fatalf("IDs not strictly ascending: %v", ids)
			}
			g, ok := r.Lookup(id)
			if !ok || g.ID != id {
				t.Fatalf("Lookup(%d) = %+v, %v", id, g, ok)
			}
			if checkName(g.Contributor) != nil || checkName(g.DataNet) != nil || g.ContentSHA256 != "" && !isSHA256Hex(g.ContentSHA256) {
				t.Fatalf("registration %+v does not pass the checks", g)
			}
			contributors[g.Contributor] = true
			if same := r.SameContent(id); (g.ContentSHA256 == "") != (same == nil) {
				t.Fatalf("SameContent(%d) = %v for hash %q", id, same, g.ContentSHA256)
			}
		}
		if len(r.Contributors()) != len(contributors) {
			t.Fatalf("Contributors %q, want %d", r.Contributors(), len(contributors))
		}
		if err := r.CheckIDs(ids); err != nil {
			t.Fatal(err)
		}
	})
}
