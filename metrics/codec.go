package metrics

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The binary encoding of a batch of normalized events, as the spool keeps
// them: several times faster to write and read than JSON, which matters
// because every accepted event is encoded once and decoded once on its way
// to the store.
//
//	version  1 byte (eventsCodecV3; DecodeEvents also reads eventsCodecV1
//	         and eventsCodecV2)
//	count    uvarint
//	count times:
//	  time        varint, Unix seconds (normalized events have whole seconds)
//	  reply_code  uvarint
//	  machine     1 byte: 0 no verdict, 1 machine, 2 human
//	              (V1: 0 false, 1 true; a V1 false is read as no verdict,
//	              which statistics count as human, as they did)
//	  each string field in stringFields order: uvarint length, bytes
//	              (V1 lacks the fields after evidence_id: category and
//	              posted_by; V2 lacks those after category: posted_by)
//
// Adding a field to Event needs a new version, and DecodeEvents must keep
// reading the old ones: records written before an upgrade are still in the
// spool after it.
const (
	eventsCodecV1 = 1
	eventsCodecV2 = 2
	eventsCodecV3 = 3
)

// How many of stringFields a V1 and a V2 record carry.
const (
	v1StringFields = 26
	v2StringFields = 27
)

// ErrBadEncoding is wrapped by DecodeEvents' errors.
var ErrBadEncoding = errors.New("bad event encoding")

// AppendEvents appends the binary encoding of events to dst.
func AppendEvents(dst []byte, events []Event) []byte {
	dst = append(dst, eventsCodecV3)
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
		for _, f := range stringFields {
			v := *f.get(e)
			dst = binary.AppendUvarint(dst, uint64(len(v)))
			dst = append(dst, v...)
		}
	}
	return dst
}

// DecodeEvents decodes what AppendEvents wrote. The strings of the events
// share one copy of data.
func DecodeEvents(data []byte) ([]Event, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("metrics: %w: unknown version", ErrBadEncoding)
	}
	version := data[0]
	var fields []stringField
	switch version {
	case eventsCodecV1:
		fields = stringFields[:v1StringFields]
	case eventsCodecV2:
		fields = stringFields[:v2StringFields]
	case eventsCodecV3:
		fields = stringFields
	default:
		return nil, fmt.Errorf("metrics: %w: unknown version", ErrBadEncoding)
	}
	d := decoder{s: string(data[1:])}
	n := d.uvarint()
	// Each event takes at least 3 + len(fields) bytes: a count larger
	// than the input allows is corrupt, not a reason to allocate.
	if d.err == nil && n > uint64(len(d.s))/uint64(3+len(fields)) {
		return nil, fmt.Errorf("metrics: %w: %d events in %d bytes", ErrBadEncoding, n, len(data))
	}
	events := make([]Event, n)
	for i := range events {
		e := &events[i]
		e.Time = time.Unix(d.varint(), 0).UTC()
		code := d.uvarint()
		if code > 0xffff && d.err == nil {
			d.err = fmt.Errorf("reply code %d", code)
		}
		e.ReplyCode = uint16(code)
		switch m := d.byte(); {
		case m == 1:
			e.Machine = Verdict(true)
		case m == 2 && version != eventsCodecV1:
			e.Machine = Verdict(false)
		case m > 2 || m == 2 && version == eventsCodecV1:
			if d.err == nil {
				d.err = fmt.Errorf("machine verdict byte %d", m)
			}
		}
		for _, f := range fields {
			*f.get(e) = d.str()
		}
		if d.err != nil {
			break
		}
	}
	if d.err == nil && len(d.s) != 0 {
		d.err = fmt.Errorf("%d bytes after the last event", len(d.s))
	}
	if d.err != nil {
		return nil, fmt.Errorf("metrics: %w: %v", ErrBadEncoding, d.err)
	}
	return events, nil
}

// decoder reads from s; after the first error every read returns zero.
type decoder struct {
	s   string
	err error
}

var errTruncated = errors.New("truncated")

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if len(d.s) == 0 {
			d.err = errTruncated
			return 0
		}
		b := d.s[0]
		d.s = d.s[1:]
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v
		}
	}
	d.err = errors.New("varint overflows 64 bits")
	return 0
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1) // zig-zag, as binary.AppendVarint
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.s) == 0 {
		d.err = errTruncated
		return 0
	}
	b := d.s[0]
	d.s = d.s[1:]
	return b
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.s)) {
		d.err = errTruncated
		return ""
	}
	v := d.s[:n]
	d.s = d.s[n:]
	return v
}
