package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// UnmarshalJSON decodes an event, refusing fields it does not know (a
// misspelt "recipent" is an error, not a silently empty recipient).
//
// Intake decodes every posted event, and encoding/json's reflection is the
// largest cost of it; so a flat object of exactly-named keys with plain
// values is decoded by a small scanner here, and anything else — escapes,
// nulls, odd spellings, errors — by encoding/json, which therefore decides
// every error message and every corner case. FuzzEventUnmarshalJSON holds
// the two to the same results.
func (e *Event) UnmarshalJSON(data []byte) error {
	saved := *e
	if e.decodeFlat(data) {
		return nil
	}
	*e = saved
	type plain Event // the same fields, without this method
	// The time is decoded through eventTime, which takes what time.Time
	// takes but words its refusal for the person who posted the event
	// instead of quoting Go's layout string.
	shadow := struct {
		*plain
		Time eventTime `json:"time"`
	}{plain: (*plain)(e), Time: eventTime{e.Time}}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&shadow)
	e.Time = shadow.Time.t
	if err != nil {
		return err
	}
	if dec.More() {
		return errors.New("metrics: more than one JSON value")
	}
	return nil
}

// eventTime decodes what time.Time's UnmarshalJSON decodes (a JSON string
// in RFC 3339; null leaves it as it was), with a ValidationError naming the
// accepted forms and range otherwise.
type eventTime struct{ t time.Time }

func (et *eventTime) UnmarshalJSON(raw []byte) error {
	if string(raw) == "null" {
		return nil
	}
	var t time.Time
	if err := t.UnmarshalJSON(raw); err != nil {
		value := string(raw)
		if len(raw) >= 2 && raw[0] == '"' {
			if s, ok := unquote(raw); ok {
				value = s
			}
		}
		return &ValidationError{Field: "time", Err: ErrBadTime, Value: short(value), Want: timeWant}
	}
	et.t = t
	return nil
}

// flatField sets one field from its raw JSON value; false means "not
// plain: let encoding/json decide".
type flatField func(e *Event, raw []byte) bool

// flatFields maps JSON names to setters. It is read-only.
var flatFields = func() map[string]flatField {
	m := map[string]flatField{
		"time": func(e *Event, raw []byte) bool {
			return raw[0] == '"' && e.Time.UnmarshalJSON(raw) == nil
		},
		"reply_code": func(e *Event, raw []byte) bool {
			if raw[0] < '0' || raw[0] > '9' || (raw[0] == '0' && len(raw) > 1) {
				return false
			}
			n, err := strconv.ParseUint(string(raw), 10, 16)
			e.ReplyCode = uint16(n)
			return err == nil
		},
		"machine": func(e *Event, raw []byte) bool {
			var v bool
			switch string(raw) {
			case "true":
				v = true
			case "false":
			default:
				return false // null (no verdict) too: encoding/json decides
			}
			e.Machine = &v
			return true
		},
	}
	for _, f := range stringFields {
		get := f.get
		m[f.name] = func(e *Event, raw []byte) bool {
			if raw[0] != '"' {
				return false
			}
			v, ok := unquote(raw)
			*get(e) = v
			return ok
		}
	}
	return m
}()

// decodeFlat decodes data if it is a flat object whose keys are all exact
// field names and whose values are plain: strings of valid UTF-8 without
// control characters or surrogate escapes, unsigned integers, true or false.
func (e *Event) decodeFlat(data []byte) bool {
	s := scanner{b: data}
	s.space()
	if !s.object(e) {
		return false
	}
	s.space()
	return s.done()
}

// DecodeEventsJSON decodes a JSON array of events if every element is a
// flat object that decodeFlat takes; otherwise it returns false and the
// caller decodes with encoding/json, which judges each element and words
// every error. It saves intake the cost of encoding/json's scanner.
func DecodeEventsJSON(data []byte) ([]Event, bool) {
	s := scanner{b: data}
	s.space()
	if !s.consume('[') {
		return nil, false
	}
	// The count of '{' is the count of events (or more, with braces in
	// strings): it spares append's copying, which would hold up to twice
	// the events at once. Bounded by the size of the smallest valid event
	// (64 bytes), so that a body of braces does not allocate an event for
	// each.
	events := make([]Event, 0, min(bytes.Count(data, []byte{'{'}), len(data)/64)+1)
	s.space()
	if s.consume(']') {
		s.space()
		return events, s.done()
	}
	for {
		s.space()
		events = append(events, Event{})
		if !s.object(&events[len(events)-1]) {
			return nil, false
		}
		s.space()
		if s.consume(']') {
			s.space()
			return events, s.done()
		}
		if !s.consume(',') {
			return nil, false
		}
	}
}

// object decodes one flat object into e.
func (s *scanner) object(e *Event) bool {
	if !s.consume('{') {
		return false
	}
	s.space()
	if s.consume('}') {
		return true
	}
	for {
		s.space()
		key, ok := s.plainString()
		if !ok || bytes.IndexByte(key, '\\') >= 0 {
			return false
		}
		set := flatFields[string(key[1:len(key)-1])]
		if set == nil {
			return false
		}
		s.space()
		if !s.consume(':') {
			return false
		}
		s.space()
		raw, ok := s.plainValue()
		if !ok || !set(e, raw) {
			return false
		}
		s.space()
		if s.consume('}') {
			return true
		}
		if !s.consume(',') {
			return false
		}
	}
}

type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) consume(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) done() bool { return s.i == len(s.b) }

// plainString returns a string token, quotes included, if it has no
// control characters and is valid UTF-8.
func (s *scanner) plainString() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	start := s.i - 1
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			tok := s.b[start:s.i]
			return tok, utf8.Valid(tok)
		case c == '\\':
			s.i++ // the escaped byte cannot end the string
		case c < 0x20:
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// unquote returns the value of a string token. It declines (false) the
// \u escapes of UTF-16 surrogates, whose repair encoding/json does its own
// way, and anything malformed.
func unquote(tok []byte) (string, bool) {
	body := tok[1 : len(tok)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return string(body), true
	}
	out := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i == len(body) {
			return "", false
		}
		switch body[i] {
		case '"', '\\', '/':
			out = append(out, body[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if i+5 > len(body) {
				return "", false
			}
			r, err := strconv.ParseUint(string(body[i+1:i+5]), 16, 32)
			if err != nil || utf16.IsSurrogate(rune(r)) {
				return "", false
			}
			out = utf8.AppendRune(out, rune(r))
			i += 4
		default:
			return "", false
		}
	}
	return string(out), true
}

// plainValue returns a plain string, an unsigned integer, true or false.
func (s *scanner) plainValue() ([]byte, bool) {
	if s.i >= len(s.b) {
		return nil, false
	}
	if s.b[s.i] == '"' {
		return s.plainString()
	}
	start := s.i
	for s.i < len(s.b) && (s.b[s.i] >= '0' && s.b[s.i] <= '9' || s.b[s.i] >= 'a' && s.b[s.i] <= 'z') {
		s.i++
	}
	return s.b[start:s.i], s.i > start
}
