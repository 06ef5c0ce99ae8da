package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// reflective decodes as encoding/json alone would, unknown fields refused.
func reflective(data []byte) (Event, error) {
	type plain Event
	var e Event
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode((*plain)(&e))
	if err == nil && dec.More() {
		err = json.Unmarshal([]byte("x"), new(int)) // any error: both must fail
	}
	return e, err
}

var eventJSONSamples = []string{
	`{"kind":"sent","time":"2026-11-25T10:00:00Z","account":"acme","recipient":"a@example.com"}`,
	` { "kind" : "opened" , "machine" : true , "reply_code" : 250 , "time" : "2026-11-25T10:00:00+09:00" } `,
	`{}`,
	`{"kind":"sent","recipent":"typo"}`,
	`{"Kind":"sent"}`,
	`{"kind":"s\u00e9nt","diagnostic":"550 \"quoted\" \\ \/ \b\f\n\r\t"}`,
	`{"message_id":"\u003c1@example.com\u003e"}`,
	`{"campaign":"\ud83d\ude00 pair"}`,
	`{"campaign":"\ud83d lone"}`,
	`{"campaign":"\u00"}`,
	`{"campaign":"\x"}`,
	`{"camp\u0061ign":"escaped key"}`,
	`{"kind":null,"machine":null,"reply_code":null,"time":null}`,
	`{"reply_code":65536}`,
	`{"reply_code":-1}`,
	`{"reply_code":1e2}`,
	`{"reply_code":007}`,
	`{"machine":"true"}`,
	`{"time":"yesterday"}`,
	`{"time":"2026-11-25 10:00:00"}`,
	`{"time":"2026-11-25T10:00:00Z","time":null}`,
	`{"machine":false,"category":"marketing"}`,
	`{"machine":true,"machine_reason":"apple_mpp","machine":false}`,
	`{"machine":false,"machine":null}`,
	`{"kind":"dropped","reason":"blocklisted","diagnostic":"on the blocklist since 2026-11-20"}`,
	`{"time":12}`,
	`{"kind":"sent","kind":"delivered"}`,
	`{"campaign":"` + strings.Repeat("é", 10) + `"}`,
	"{\"campaign\":\"tab\there\"}",
	"{\"campaign\":\"bad \xff utf8\"}",
	`{"kind":5}`,
	`{"kind":"sent",}`,
	`{"kind":"sent"} {}`,
	`[]`,
	`"sent"`,
}

func TestEventUnmarshalJSONMatchesEncodingJSON(t *testing.T) {
	for _, sample := range eventJSONSamples {
		checkSameAsEncodingJSON(t, []byte(sample))
	}
	var e Event
	if err := json.Unmarshal([]byte(eventJSONSamples[0]), &e); err != nil || e.Recipient != "a@example.com" || e.Kind != KindSent {
		t.Errorf("decoded %+v, %v", e, err)
	}
	if err := json.Unmarshal([]byte(`{"recipent":"x"}`), &e); err == nil || !strings.Contains(err.Error(), "recipent") {
		t.Errorf("unknown field: %v, want an error naming it", err)
	}
}

// A bad time is refused in the poster's words, on both paths (the fast
// path hands bad values to encoding/json), and in an array or NDJSON line
// decoded through Event.UnmarshalJSON.
func TestEventUnmarshalJSONTimeErrors(t *testing.T) {
	const want = "want RFC 3339, e.g. 2026-11-29T10:00:00Z, between 2000-01-01 and one hour from now"
	for _, c := range []struct{ data, value string }{
		{`{"kind":"sent","time":"yesterday"}`, `time "yesterday"`},
		{`{"time":"2026-11-25 10:00:00","kind":"sent"}`, `time "2026-11-25 10:00:00"`},
		{`{"time":"2026-11-25"}`, `time "2026-11-25"`},
		{`{"time":12}`, `time "12"`},
		{`{"time":"\u0032026"}`, `time "2026"`},
	} {
		var e Event
		err := e.UnmarshalJSON([]byte(c.data))
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field != "time" || !errors.Is(err, ErrBadTime) {
			t.Errorf("%s: error %v, want a ValidationError on time", c.data, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.value) || !strings.HasSuffix(msg, want) {
			t.Errorf("%s: %q, want it to name %s and end %q", c.data, msg, c.value, want)
		}
		for _, leak := range []string{"2006-01-02", "UnmarshalJSON", "parsing time"} {
			if strings.Contains(msg, leak) {
				t.Errorf("%s: %q leaks %q", c.data, msg, leak)
			}
		}
		var events []Event
		if err := json.Unmarshal([]byte("["+c.data+"]"), &events); err == nil || err.Error() != msg {
			t.Errorf("%s in an array: %v, want %q", c.data, err, msg)
		}
	}
}

// The machine verdict has three states in JSON: absent or null (nil),
// false and true; encoding keeps them apart.
func TestEventJSONMachineVerdict(t *testing.T) {
	for _, c := range []struct {
		in   string
		want *bool
		out  string
	}{
		{`{"kind":"opened"}`, nil, ``},
		{`{"kind":"opened","machine":null}`, nil, ``},
		{`{"kind":"opened","machine":false}`, Verdict(false), `"machine":false`},
		{`{"kind":"opened","machine":true,"machine_reason":"apple_mpp"}`, Verdict(true), `"machine":true,"machine_reason":"apple_mpp"`},
	} {
		var e Event
		if err := e.UnmarshalJSON([]byte(c.in)); err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if (e.Machine == nil) != (c.want == nil) || e.Machine != nil && *e.Machine != *c.want {
			t.Errorf("%s: machine %v, want %v", c.in, e.Machine, c.want)
		}
		out, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if c.out == "" && strings.Contains(string(out), `"machine"`) || !strings.Contains(string(out), c.out) {
			t.Errorf("%s: encoded %s, want %s", c.in, out, c.out)
		}
	}
}

func checkSameAsEncodingJSON(t *testing.T, data []byte) {
	t.Helper()
	want, wantErr := reflective(data)
	var got Event
	gotErr := got.UnmarshalJSON(data)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("%q: error %v, encoding/json says %v", data, gotErr, wantErr)
	}
	if gotErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %+v\nwant %+v", data, got, want)
	}
}

func FuzzEventUnmarshalJSON(f *testing.F) {
	for _, s := range eventJSONSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return // the array decoder rejects the body before an event sees it
		}
		checkSameAsEncodingJSON(t, data)
	})
}

func BenchmarkEventUnmarshalJSON(b *testing.B) {
	data := []byte(`{"account":"acme","kind":"delivered","time":"2026-11-25T10:00:00Z","recipient":"user1@gmail.com",` +
		`"sender_domain":"news.example.com","campaign":"winter","message_id":"<1@example.com>"}`)
	b.Run("flat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e Event
			if err := e.UnmarshalJSON(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reflective(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func FuzzDecodeEventsJSON(f *testing.F) {
	f.Add([]byte("[" + eventJSONSamples[0] + "," + eventJSONSamples[1] + "]"))
	f.Add([]byte(" [ ] "))
	for _, s := range eventJSONSamples {
		f.Add([]byte("[" + s + "]"))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := DecodeEventsJSON(data)
		if !ok {
			return // the caller falls back to encoding/json
		}
		type plain Event
		var want []plain
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&want); err != nil || dec.More() {
			t.Fatalf("%q: fast path took what encoding/json refuses (%v)", data, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d events, encoding/json %d", data, len(got), len(want))
		}
		for i := range got {
			if !reflect.DeepEqual(got[i], Event(want[i])) {
				t.Fatalf("%q: event %d:\n got %+v\nwant %+v", data, i, got[i], want[i])
			}
		}
	})
}
