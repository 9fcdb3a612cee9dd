package store

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"format":"goinfluence.store/v1","dtype":"f16","dim":3,` +
		`"layers":[{"name":"a","offset":0,"dim":1},{"name":"b","offset":1,"dim":2}],` +
		`"projection":{"kind":"kronecker","k_in":2,"k_out":2},"seed":7,` +
		`"shards":[{"file":"shard-000000.safetensors","rows":2,"sha256":"` +
		`00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}],"count":2}`))
	f.Add([]byte(`{"format":"goinfluence.store/v1","dtype":"f32","dim":1,"layers":[{"name":"x","offset":0,"dim":1}],` +
		`"projection":{"kind":"none"},"seed":0,"shards":[],"count":0}`))
	f.Add([]byte(`{"format":"goinfluence.store/v1","dim":-1}`))
	f.Add([]byte(`{"shards":[{"file":"../../etc/passwd","rows":1}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, buf []byte) {
		m, err := parseManifest(buf)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		for i, s := range m.Shards {
			if s.File != shardName(i) {
				t.Fatalf("accepted shard file %q at index %d", s.File, i)
			}
		}
		// A valid manifest survives a round trip through the writer's encoding.
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := parseManifest(out)
		if err != nil {
			t.Fatalf("re-parsing %s: %v", out, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the manifest:\n%+v\n%+v", m, m2)
		}
	})
}
