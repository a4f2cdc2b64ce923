package testbin

import (
	"bytes"
	"testing"
)

func TestAddrWriterReadsTheStartedLineAcrossWrites(t *testing.T) {
	var out bytes.Buffer
	w := &addrWriter{next: &out}
	log := `{"level":"INFO","msg":"opening","addr":"nope"}` + "\n" +
		`{"level":"INFO","msg":"rolegate started","mode":"http","addr":"127.0.0.1:40123"}` + "\n" +
		`{"msg":"rolegate started","addr":"127.0.0.1:1"}` + "\n"
	for i := 0; i < len(log); i += 7 { // split lines across writes
		w.Write([]byte(log[i:min(i+7, len(log))]))
	}
	if w.addr != "127.0.0.1:40123" {
		t.Errorf("addr = %q, want the first started line's", w.addr)
	}
	if out.String() != log {
		t.Errorf("output not passed on unchanged:\n%s", out.String())
	}
}
