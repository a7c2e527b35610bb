package report

import (
	"bytes"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"schema":"imans.report/v1","verdict":"pass","findings":[],` +
		`"tpm":{"pcr10":{"sha1":"00"},"list_matches":true,"entries":1},` +
		`"info":{"container_id":"c"}}`))
	f.Add([]byte(`{"schema":"imans.report/v1","verdict":"fail","findings":[{"kind":"x"}],` +
		`"tpm":{"pcr10":{"sha1":"00"},"list_matches":true,"entries":2}}`))
	f.Add([]byte(`{"schema":"imans.report/v1","verdict":"incomplete","incomplete":["x"]}`))
	f.Add([]byte(`{"schema":"imans.report/v1","verdict":"pass","incomplete":["x"]}`))
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

		// An accepted verdict is the one Decide gives its contents.
		decided := *r
		decided.Incomplete = append([]string(nil), r.Incomplete...)
		decided.Decide()
		if decided.Verdict != r.Verdict {
			t.Fatalf("accepted verdict %q, Decide gives %q", r.Verdict, decided.Verdict)
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
