// Package webhook is the wire form of repute's suppression webhooks
// (issue 10): the JSON body of a change of an account's unsubscribe list
// and its HMAC-SHA256 signature.
//
// Each POST carries
//
//	Content-Type: application/json
//	X-Repute-Delivery: <the change's id>   (delivery is at least once: dedupe on it)
//	X-Repute-Timestamp: <unix seconds>
//	X-Repute-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//
// The timestamp is signed with the body so that a captured request cannot
// be replayed later: a receiver refuses a timestamp too far from its clock
// (Verify's tolerance).
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// The headers of a delivery.
const (
	HeaderDelivery  = "X-Repute-Delivery"
	HeaderTimestamp = "X-Repute-Timestamp"
	HeaderSignature = "X-Repute-Signature"
)

// Payload is the body of a delivery: one change of an unsubscribe list.
type Payload struct {
	ID           string    `json:"id"` // the change's id, as X-Repute-Delivery
	Time         time.Time `json:"time"`
	Action       string    `json:"action"` // unsubscribed or resubscribed
	Address      string    `json:"address"`
	SenderDomain string    `json:"sender_domain"`
	Reason       string    `json:"reason"`
	EventID      string    `json:"event_id,omitempty"`
	By           string    `json:"by"`
}

// Sign returns the X-Repute-Signature of body sent at timestamp (unix
// seconds): "sha256=" and the hex HMAC-SHA256 of "timestamp.body".
func Sign(secret []byte, timestamp int64, body []byte) string {
	return "sha256=" + hex.EncodeToString(mac(secret, strconv.FormatInt(timestamp, 10), body))
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrBadSignature = errors.New("webhook: the signature does not match")
	ErrStale        = errors.New("webhook: the timestamp is too far from now (a replay?)")
)

// Verify checks a delivery's headers against its body, as a receiver does:
// the signature (in constant time), then that the timestamp is within
// tolerance of now (0: not checked).
func Verify(secret []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("webhook: malformed " + HeaderTimestamp)
	}
	hexSig, ok := strings.CutPrefix(signature, "sha256=")
	got, err := hex.DecodeString(hexSig)
	if !ok || err != nil {
		return errors.New("webhook: malformed " + HeaderSignature)
	}
	if !hmac.Equal(got, mac(secret, timestamp, body)) {
		return ErrBadSignature
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
			return ErrStale
		}
	}
	return nil
}
