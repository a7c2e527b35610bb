package report

import (
	"bytes"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"schema":"imans.report/v1","verdict":"pass","findings":[],` +
		`"tpm":{"pcr10":{"sha1":"00"}},"info":{"container_id":"c"}}`))
	f.Add([]byte(`{"schema":"imans.report/v1","verdict":"fail","findings":[{"kind":"x"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		if r.Schema != Schema {
			t.Fatalf("accepted schema %q", r.Schema)
		}
		switch r.Verdict {
		case Pass, Fail, Incomplete:
		default:
			t.Fatalf("accepted verdict %q", r.Verdict)
		}

		// What a report file holds never reaches the terminal raw: the
		// summary has no control character but its line ends.
		var b bytes.Buffer
		if err := r.Summary(&b); err != nil {
			t.Fatal(err)
		}
		for i, c := range b.Bytes() {
			if (c < 0x20 && c != '\n') || c == 0x7f {
				t.Fatalf("summary byte %d is %#x:\n%q", i, c, b.String())
			}
		}
	})
}
