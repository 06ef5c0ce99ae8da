package metrics

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// derivedIDDomain separates DerivedID's hash input from ComputeID's.
const derivedIDDomain = "repute derived event v1"

// ReportIdentity returns the identity of a report: "mid:" and its
// Message-ID (surrounding white space and one pair of angle brackets
// removed, so "<a@b>" and "a@b" agree) when it has one, otherwise "sha256:"
// and the hex SHA-256 of its bytes with line endings made LF, so that the
// same message read over IMAP (CRLF) and from a file (LF) agrees.
func ReportIdentity(messageID string, raw []byte) string {
	id := strings.TrimSpace(messageID)
	if strings.HasPrefix(id, "<") && strings.HasSuffix(id, ">") && len(id) >= 2 {
		id = strings.TrimSpace(id[1 : len(id)-1])
	}
	if id != "" {
		return "mid:" + id
	}
	h := sha256.New()
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\r')
		if i < 0 {
			h.Write(raw)
			break
		}
		h.Write(raw[:i])
		h.Write([]byte{'\n'})
		raw = raw[i+1:]
		if len(raw) > 0 && raw[0] == '\n' {
			raw = raw[1:]
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// DerivedID returns the id of the event of the given kind that a report
// (identified by reportID, from ReportIdentity) gives for recipient: the
// first 16 bytes, in hex, of SHA-256 over a fixed label and the three
// values, each length-prefixed, the recipient lower-cased and trimmed as
// Normalize leaves it. Nothing else enters it.
//
// A report — a bounce (RFC 3464 DSN or an MTA's prose), a complaint (ARF),
// a success or delay DSN — yields one event per recipient it names. Its id
// is DerivedID(ReportIdentity(messageID, raw), recipient, kind): it depends
// only on the report itself, the recipient and the kind, never on where the
// report was read (source, source_ref: an IMAP folder, a Kafka offset, an
// upload), the account it was attributed to, or how the original send was
// found (correlation). So one report read twice, read from two places, or
// correlated again later is one event, and intake counts it once.
//
// Two consequences for whoever derives events:
//   - take the event's time from the report (its Arrival-Date or Date), not
//     from the moment it was read, so that a repeat has the same time too
//     (the ClickHouse store looks for known ids within the batch's times);
//   - identity in the store is (account, event_id): a report attributed to
//     another account on a second reading is the same id under another
//     account, i.e. another stored event. Attribution must therefore be
//     deterministic, or a correction must remove the first attribution.
func DerivedID(reportID, recipient string, kind Kind) string {
	buf := make([]byte, 0, 128)
	for _, v := range []string{derivedIDDomain, reportID,
		strings.ToLower(strings.TrimSpace(recipient)), string(kind)} {
		buf = binary.AppendUvarint(buf, uint64(len(v)))
		buf = append(buf, v...)
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:16])
}
