package metrics

import (
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func fullEvent() Event {
	e := Event{Time: time.Date(2026, 11, 25, 10, 0, 1, 0, time.UTC), Kind: KindBounced, ReplyCode: 550, Machine: Verdict(true)}
	for i, f := range stringFields {
		if f.name != "kind" {
			*f.get(&e) = f.name + "-" + strings.Repeat("é", i) // every field distinct, multi-byte
		}
	}
	return e
}

func TestEventsCodecRoundTrip(t *testing.T) {
	in := []Event{fullEvent(), {Time: time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC), Kind: KindSent}, fullEvent()}
	in[2].Machine, in[2].ReplyCode = Verdict(false), 0
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

// appendEventsV1 is AppendEvents as it was before version 2, for the
// spool records an upgrade finds.
func appendEventsV1(dst []byte, events []Event) []byte {
	dst = append(dst, eventsCodecV1)
	dst = binary.AppendUvarint(dst, uint64(len(events)))
	for i := range events {
		e := &events[i]
		dst = binary.AppendVarint(dst, e.Time.Unix())
		dst = binary.AppendUvarint(dst, uint64(e.ReplyCode))
		machine := byte(0)
		if e.Machine != nil && *e.Machine {
			machine = 1
		}
		dst = append(dst, machine)
		for _, f := range stringFields[:v1StringFields] {
			v := *f.get(e)
			dst = binary.AppendUvarint(dst, uint64(len(v)))
			dst = append(dst, v...)
		}
	}
	return dst
}

// Records spooled before the upgrade decode: a V1 machine false is no
// verdict (it counted as human, and still does), and there is no category.
func TestEventsCodecReadsV1(t *testing.T) {
	if stringFields[v1StringFields-1].name != "evidence_id" {
		t.Fatalf("v1StringFields = %d no longer ends at evidence_id", v1StringFields)
	}
	in := []Event{fullEvent(), fullEvent(), fullEvent()}
	in[1].Machine = Verdict(false)
	in[2].Machine = nil
	want := append([]Event{}, in...)
	for i := range want {
		want[i].Category, want[i].PostedBy = "", ""
	}
	want[1].Machine = nil
	out, err := DecodeEvents(appendEventsV1(nil, in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("V1 records:\n got %+v\nwant %+v", out, want)
	}
}

// appendEventsV2 is AppendEvents as it was before version 3 (no
// posted_by), for the spool records an upgrade finds.
func appendEventsV2(dst []byte, events []Event) []byte {
	v3 := AppendEvents(nil, nil)[0]
	if v3 != eventsCodecV3 {
		panic("AppendEvents no longer writes version 3")
	}
	dst = append(dst, eventsCodecV2)
	dst = binary.AppendUvarint(dst, uint64(len(events)))
	for i := range events {
		e := &events[i]
		dst = binary.AppendVarint(dst, e.Time.Unix())
		dst = binary.AppendUvarint(dst, uint64(e.ReplyCode))
		machine := byte(0)
		if e.Machine != nil {
			machine = 2
			if *e.Machine {
				machine = 1
			}
		}
		dst = append(dst, machine)
		for _, f := range stringFields[:v2StringFields] {
			v := *f.get(e)
			dst = binary.AppendUvarint(dst, uint64(len(v)))
			dst = append(dst, v...)
		}
	}
	return dst
}

// Records spooled before posted_by decode with it empty, everything else
// (the three-state verdict, the category) as written.
func TestEventsCodecReadsV2(t *testing.T) {
	if stringFields[v2StringFields-1].name != "category" {
		t.Fatalf("v2StringFields = %d no longer ends at category", v2StringFields)
	}
	in := []Event{fullEvent(), fullEvent(), fullEvent()}
	in[1].Machine = Verdict(false)
	in[2].Machine = nil
	want := append([]Event{}, in...)
	for i := range want {
		want[i].PostedBy = ""
	}
	out, err := DecodeEvents(appendEventsV2(nil, in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("V2 records:\n got %+v\nwant %+v", out, want)
	}
	if out[0].Category == "" {
		t.Error("V2 record lost its category")
	}
}

func TestEventsCodecRejectsDamage(t *testing.T) {
	good := AppendEvents(nil, []Event{fullEvent(), fullEvent()})
	for name, data := range map[string][]byte{
		"empty":           nil,
		"unknown version": append([]byte{9}, good[1:]...),
		"truncated":       good[:len(good)-3],
		"trailing bytes":  append(append([]byte{}, good...), 0),
		"huge count":      {eventsCodecV2, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad verdict":     append([]byte{eventsCodecV3, 1, 2, 0, 3}, make([]byte, len(stringFields))...),
		"V2 bad verdict":  append([]byte{eventsCodecV2, 1, 2, 0, 3}, make([]byte, v2StringFields)...),
		"V1 verdict 2":    append([]byte{eventsCodecV1, 1, 2, 0, 2}, make([]byte, v1StringFields)...),
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
