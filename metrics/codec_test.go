package metrics

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func fullEvent() Event {
	e := Event{Time: time.Date(2026, 11, 25, 10, 0, 1, 0, time.UTC), Kind: KindBounced, ReplyCode: 550, Machine: true}
	for i, f := range stringFields {
		if f.name != "kind" {
			*f.get(&e) = f.name + "-" + strings.Repeat("é", i) // every field distinct, multi-byte
		}
	}
	return e
}

func TestEventsCodecRoundTrip(t *testing.T) {
	in := []Event{fullEvent(), {Time: time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC), Kind: KindSent}, fullEvent()}
	in[2].Machine, in[2].ReplyCode = false, 0
	out, err := DecodeEvents(AppendEvents(nil, in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
	if out, err := DecodeEvents(AppendEvents(nil, nil)); err != nil || len(out) != 0 {
		t.Errorf("empty batch: %v, %v", out, err)
	}
}

func TestEventsCodecRejectsDamage(t *testing.T) {
	good := AppendEvents(nil, []Event{fullEvent(), fullEvent()})
	for name, data := range map[string][]byte{
		"empty":           nil,
		"unknown version": append([]byte{9}, good[1:]...),
		"truncated":       good[:len(good)-3],
		"trailing bytes":  append(append([]byte{}, good...), 0),
		"huge count":      {eventsCodecV1, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if _, err := DecodeEvents(data); !errors.Is(err, ErrBadEncoding) {
			t.Errorf("%s: err = %v, want ErrBadEncoding", name, err)
		}
	}
	// No prefix of a valid encoding decodes, and none panics.
	for i := 0; i < len(good); i++ {
		if _, err := DecodeEvents(good[:i]); err == nil {
			t.Errorf("prefix of %d bytes decoded", i)
		}
	}
}

func FuzzDecodeEvents(f *testing.F) {
	f.Add(AppendEvents(nil, []Event{fullEvent()}))
	f.Fuzz(func(t *testing.T, data []byte) {
		events, err := DecodeEvents(data)
		if err != nil {
			return
		}
		if again, err := DecodeEvents(AppendEvents(nil, events)); err != nil || !reflect.DeepEqual(again, events) {
			t.Errorf("re-encoding changed the events: %v", err)
		}
	})
}
