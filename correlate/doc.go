// Package correlate defines how a piece of feedback finds the message it is
// about: the send reference the sender stores with its sent event, and the
// signed token that carries it in the correlation header
// (dsn.CorrelationHeader, X-Repute-ID) and in the VERP return path
// (<prefix>+<token>@<bounce_domain>). The sender writes both; ingestion
// reads them back from bounces and complaints. It imports only the
// standard library.
//
// # Formats
//
// A send reference (Ref) is 10 random bytes (80 bits) from crypto/rand,
// written as 16 characters of lower-case base32 (RFC 4648 §6 alphabet,
// lower-cased, no padding: 80 bits are exactly 16 characters), e.g.
//
//	ref   aaaqeayeaudaocaj
//
// One reference names one message to one recipient (one sent event): VERP
// gives every recipient an envelope of its own anyway. References are
// random, not derived from the Message-ID or the recipient, so they reveal
// nothing and cannot be guessed. Collision odds, by the birthday bound
// n²/2⁸¹: about 4·10⁻⁷ after 10⁹ sends, 4·10⁻⁵ after 10¹⁰.
//
// A token is the reference followed by the first 10 bytes (80 bits) of
// HMAC-SHA256 (RFC 2104) over a fixed label and the reference, 20 bytes
// written as 32 characters of the same lower-case base32; the reference
// above under the key of the package example gives
//
//	token aaaqeayeaudaocajsvb4gsergnhtywoi
//	VERP  bounces+aaaqeayeaudaocajsvb4gsergnhtywoi@bounces.acme.example
//
// The same token is the value of the correlation header and the VERP
// suffix: one format, one parser. It refers to the send; it carries none of
// its fields (account, campaign, …), which are looked up by reference.
// RFC 2104 §5 recommends keeping no fewer than 80 bits of a truncated MAC
// and, against birthday attacks, half the hash (128 bits); 80 bits is
// chosen for length. A forger cannot check a guess offline: each guess is a
// message delivered to the bounce mailbox (or a request to an endpoint),
// right with odds of 2⁻⁸⁰; colliding MACs of two observed tokens give
// nothing, as every token signs a different reference and a full-state
// collision of HMAC's 256-bit hash stays out of reach. The label
// ("repute/correlate/v1") keeps a correlation token from being accepted
// where another kind of token signed with the same key set is expected
// (tracking tokens are to sign labels of their own); a later format would
// have another label and another length.
//
// # Use
//
// The sender calls NewRef for each message and recipient, stores the
// reference with its sent event, and writes Signer.Token(ref) as the
// X-Repute-ID value and into VERPAddress for MAIL FROM. Ingestion takes
// the header value, or VERPToken of a bounce's envelope address, to
// Signer.Parse, and looks the send up by the reference it returns.
//
// # Keys
//
// Tokens are signed with the signing key set of repute serve: the first
// key signs, every key verifies, so a key is rotated by putting a new one
// in front and dropping the old one once its tokens no longer matter.
//
// # Length budget
//
// RFC 5321 §4.5.3.1.1 caps a local part at 64 octets. The token takes 32
// and the separator 1, leaving MaxPrefixLen = 31 octets for the prefix:
// "bounces+<token>" is 40 octets, "unsubscribe+<token>" 44. VERPAddress
// refuses a prefix that does not fit.
//
// # Case
//
// MTAs may change the case of an address (RFC 5321 §2.4 lets only the
// destination host interpret the local part, and some systems lower- or
// upper-case it whole): tokens and references are lower-case only, and
// Parse, ParseRef and VERPToken accept any case.
//
// # Deliberate divergences
//
//   - Parse returns no reference with an error, unlike the lenient parsers
//     elsewhere in repute: an unverified reference must not be used.
//   - VERPToken accepts '-' and '=' as the separator as well as '+' (see
//     its documentation); VERPAddress writes '+' only (RFC 5233).
package correlate
