package ingest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"repute/metrics"
)

// DefaultMaxEvidence is the cap on a stored message (before compression)
// when Processor is given none: 256 KiB holds a whole bounce or complaint
// with its returned original in almost every case (the corpus's largest
// report is 120 KiB); a larger message keeps its header, its report parts
// and the returned headers (reduceEvidence).
const DefaultMaxEvidence = 256 << 10

// EvidenceStore keeps raw reports (both stores implement it). Storing an
// Evidence whose (Account, ID) is already stored changes nothing.
type EvidenceStore interface {
	PutEvidence(ctx context.Context, ev []metrics.Evidence) error
}

// Report is what Processor.Process makes of one message.
type Report struct {
	// Events are the message's events, each with its evidence_id; submit
	// them after Evidence is stored.
	Events []metrics.Event
	// Evidence holds the message once per account among Events; empty
	// when there are no events.
	Evidence []metrics.Evidence
	// Ignored says the message was neither a bounce, a complaint nor an
	// unsubscribe request: no events, nothing to store.
	Ignored bool
}

// Processor converts messages and prepares their evidence: what every
// source (IMAP, Kafka, HTTP, files) does with one raw report.
type Processor struct {
	conv        *Converter
	maxEvidence int
	now         func() time.Time
}

// NewProcessor returns a Processor using conv; maxEvidence caps a stored
// message (DefaultMaxEvidence when ≤ 0); now stamps Evidence.Stored (time.Now
// when nil).
func NewProcessor(conv *Converter, maxEvidence int, now func() time.Time) *Processor {
	if maxEvidence <= 0 {
		maxEvidence = DefaultMaxEvidence
	}
	if now == nil {
		now = time.Now
	}
	return &Processor{conv: conv, maxEvidence: maxEvidence, now: now}
}

// Process converts one message read from src (Converter.Events, whose
// errors it returns) and, when it produced events, returns its evidence and
// sets each event's evidence_id to it.
func (p *Processor) Process(ctx context.Context, raw []byte, src Source) (Report, error) {
	events, ignored, err := p.conv.Events(ctx, raw, src)
	if err != nil || len(events) == 0 {
		return Report{Ignored: ignored}, err
	}
	msg := raw[mboxStart(raw):]
	id := metrics.EvidenceID(metrics.ReportIdentity(readHeader(msg).get("Message-ID"), msg))
	kept, truncated := reduceEvidence(msg, p.maxEvidence)
	data := metrics.EncodeEvidence(kept)
	stored := p.now().UTC()
	var evidence []metrics.Evidence
	for i := range events {
		events[i].EvidenceID = id
		if !hasAccount(evidence, events[i].Account) {
			evidence = append(evidence, metrics.Evidence{ID: id, Account: events[i].Account, Stored: stored,
				Source: src.Name, SourceRef: src.Ref, Size: len(msg), Truncated: truncated, Data: data})
		}
	}
	return Report{Events: events, Evidence: evidence}, nil
}

func hasAccount(evidence []metrics.Evidence, account string) bool {
	for _, e := range evidence {
		if e.Account == account {
			return true
		}
	}
	return false
}

// Report parts are kept whole in a reduced message: they are what the
// events were made of.
var reportTypes = map[string]bool{
	"message/delivery-status":          true, // RFC 3464
	"message/global-delivery-status":   true, // RFC 6533
	"message/feedback-report":          true, // RFC 5965
	"text/rfc822-headers":              true, // RFC 6522 §4
	"message/global-headers":           true, // RFC 6533
	"message/disposition-notification": true, // RFC 8098
}

// maxProseKept bounds each human-readable text part kept in a reduced
// message: the diagnostic of a prose bounce is in its first lines.
const maxProseKept = 16 << 10

// reduceEvidence returns msg when it fits max, otherwise a reduction: the
// top-level header verbatim, a line saying what was cut, then each MIME
// part's header with its decoded body when it is a report part (kept
// whole) or text (its first 16 KiB), the header of a returned message
// (message/rfc822) and nothing of other bodies. The reduction itself is cut
// at max.
func reduceEvidence(msg []byte, max int) ([]byte, bool) {
	if len(msg) <= max {
		return msg, false
	}
	var b bytes.Buffer
	headerLen := headerEnd(msg)
	b.Write(msg[:min(headerLen, max)])
	br := bufio.NewReader(bytes.NewReader(msg))
	top, err := textproto.ReadHeader(br)
	fmt.Fprintf(&b, "\n[repute: the message was %d bytes, over the evidence cap of %d; kept: the header above, "+
		"report parts whole, the first %d bytes of text parts, the header of a returned message]\n", len(msg), max, maxProseKept)
	if err == nil {
		e, err := message.New(message.Header{Header: top}, br)
		if err == nil || message.IsUnknownCharset(err) || message.IsUnknownEncoding(err) {
			walkErr := e.Walk(func(path []int, part *message.Entity, err error) error {
				if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
					return err
				}
				if len(path) == 0 && part.MultipartReader() != nil {
					return nil // the top header is above
				}
				keepPart(&b, path, part)
				if b.Len() >= max {
					return io.EOF
				}
				return nil
			})
			if walkErr != nil && walkErr != io.EOF {
				fmt.Fprintf(&b, "\n[repute: the MIME structure ends here: %v]\n", walkErr)
			}
		}
	}
	out := b.Bytes()
	if len(out) > max {
		out = append(out[:max:max], "\n[repute: cut at the evidence cap]\n"...)
	}
	return out, true
}

// headerEnd returns the length of msg's header with the blank line that
// ends it (RFC 5322 §2.1), or len(msg) when it has no body.
func headerEnd(msg []byte) int {
	for i := 0; i < len(msg); {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			return len(msg)
		}
		line := msg[i : i+j]
		i += j + 1
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			return i
		}
	}
	return len(msg)
}

// keepPart writes one part of a reduced message.
func keepPart(b *bytes.Buffer, path []int, part *message.Entity) {
	mt, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
	if mt == "" {
		mt = "text/plain"
	}
	fmt.Fprintf(b, "\n--- part %s: %s\n", partPath(path), mt)
	if strings.HasPrefix(mt, "multipart/") {
		return
	}
	var hb bytes.Buffer
	_ = textproto.WriteHeader(&hb, part.Header.Header)
	b.Write(hb.Bytes())
	switch {
	case reportTypes[mt]:
		_, _ = io.Copy(b, part.Body)
	case mt == "message/rfc822" || mt == "message/global":
		// The returned original: its header is how the send is found.
		h, err := textproto.ReadHeader(bufio.NewReader(part.Body))
		if err == nil {
			_ = textproto.WriteHeader(b, h)
		}
		b.WriteString("[repute: the returned message's body is not kept]\n")
	case strings.HasPrefix(mt, "text/"):
		_, _ = io.Copy(b, io.LimitReader(part.Body, maxProseKept))
		if rest, _ := io.Copy(io.Discard, part.Body); rest > 0 {
			fmt.Fprintf(b, "\n[repute: %d more bytes of this part are not kept]\n", rest)
		}
	default:
		n, _ := io.Copy(io.Discard, part.Body)
		fmt.Fprintf(b, "[repute: %d bytes of %s are not kept]\n", n, mt)
	}
}

func partPath(path []int) string {
	if len(path) == 0 {
		return "1"
	}
	s := make([]string, len(path))
	for i, p := range path {
		s[i] = fmt.Sprint(p + 1)
	}
	return strings.Join(s, ".")
}
