package metrics

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

// DefaultEvidenceRetentionDays is how long stored evidence is kept when the
// configuration does not say (evidence_retention): raw reports hold
// personal data, so they are not kept forever; 400 days covers a year of
// compliance review and the year-on-year comparison.
const DefaultEvidenceRetentionDays = 400

// Send is the original send a report is attributed to: the fields of its
// sent event that the report's feedback events carry. The stores find it
// (SendLookup in package ingest) among their sent events.
type Send struct {
	Account      string
	SenderDomain string
	Campaign     string
	SendingIP    string
	MessageID    string
	// Recipient is the address the send went to, "" when the store does
	// not say. It names the recipient of a complaint whose report
	// redacted it, and of an unsubscribe.
	Recipient string
	// Time is when the message was sent (the sent event's time, UTC, whole
	// seconds); zero when the store does not say. The tracking endpoints
	// give it to the machine-open detector (a fetch within seconds of the
	// send is a prefetch).
	Time time.Time
}

// Evidence is a stored raw report: the message that produced events, kept
// so every bounce and complaint (and what they caused) traces to it. One
// report stored for an account is one Evidence; storing it again is a no-op.
type Evidence struct {
	// ID is EvidenceID of the report; events carry it as evidence_id.
	ID string
	// Account is the account of the events the report produced; an
	// account sees only its own evidence.
	Account string
	// Stored is when it was first stored; retention counts from it.
	Stored time.Time
	// Source and SourceRef say where the report was read, as the events'.
	Source    string
	SourceRef string
	// Size is the original message's size in bytes.
	Size int
	// Truncated says Data holds a reduction of the message (its header,
	// its report parts, the returned headers), because it was larger than
	// the cap.
	Truncated bool
	// Data is the stored message, zstd-compressed (EncodeEvidence).
	Data []byte
}

// evidenceIDDomain separates EvidenceID's hash input from the event ids'.
const evidenceIDDomain = "repute evidence v1\x00"

// EvidenceID returns the id of the evidence of a report identified by
// reportID (ReportIdentity): the first 16 bytes, in hex, of SHA-256 over a
// fixed label and the identity. It depends on the report alone, so the same
// report read twice or from two places is stored once.
func EvidenceID(reportID string) string {
	sum := sha256.Sum256([]byte(evidenceIDDomain + reportID))
	return hex.EncodeToString(sum[:16])
}

// ValidEvidenceID reports whether id has the form EvidenceID returns.
func ValidEvidenceID(id string) bool {
	if len(id) != 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// zstd encoders and decoders are costly to create and safe for concurrent
// EncodeAll/DecodeAll: one of each serves the process.
var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder) {
	zstdOnce.Do(func() {
		var err error
		// SpeedFastest: evidence is written for every report on the
		// ingestion path and read rarely; it still compresses mail text
		// about 4:1. A 256 KiB window covers a whole stored report (the
		// default cap) and keeps each of the encoders EncodeAll runs
		// concurrently (one per CPU) small.
		zstdEnc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithWindowSize(256<<10), zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err) // only for invalid options
		}
		zstdDec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			panic(err)
		}
	})
	return zstdEnc, zstdDec
}

// EncodeEvidence compresses a stored message for Evidence.Data.
func EncodeEvidence(msg []byte) []byte {
	enc, _ := zstdCodecs()
	return enc.EncodeAll(msg, make([]byte, 0, len(msg)/3+64))
}

// ErrEvidenceCorrupt means stored evidence could not be decompressed.
var ErrEvidenceCorrupt = errors.New("metrics: stored evidence is corrupt")

// Message returns the stored message of e, decompressed.
func (e Evidence) Message() ([]byte, error) {
	_, dec := zstdCodecs()
	out, err := dec.DecodeAll(e.Data, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrEvidenceCorrupt, e.ID, err)
	}
	return out, nil
}

// EvidenceWriter stores evidence (both backends implement it). Storing an
// (Account, ID) already stored changes nothing.
type EvidenceWriter interface {
	PutEvidence(ctx context.Context, ev []Evidence) error
	// PurgeEvidence removes the evidence stored before the given time
	// (retention) and returns how many were removed, when the backend
	// can tell (-1 otherwise).
	PurgeEvidence(ctx context.Context, storedBefore time.Time) (int64, error)
}

// EvidenceReader reads stored evidence. account "" finds the evidence
// under any account (the admin); otherwise only the account's own.
type EvidenceReader interface {
	Evidence(ctx context.Context, account, id string) (Evidence, bool, error)
}
