package correlate_test

import (
	"errors"
	"fmt"
	"strings"

	"repute/correlate"
)

// The sender makes a reference per message and recipient, stores it with
// its sent event, and stamps the token in the correlation header and the
// VERP return path.
func Example() {
	signer, err := correlate.New(correlate.Keys{Sign: []byte("example-signing-key-0123456789abcdef")})
	if err != nil {
		panic(err)
	}
	ref, _ := correlate.ReadRef(strings.NewReader("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09")) // correlate.NewRef() in production
	token := signer.Token(ref)
	from, err := correlate.VERPAddress("bounces", token, "bounces.acme.example")
	if err != nil {
		panic(err)
	}
	fmt.Println("ref:        ", ref)
	fmt.Println("X-Repute-ID:", token)
	fmt.Println("MAIL FROM:  ", "<"+from+">")
	// Output:
	// ref:         aaaqeayeaudaocaj
	// X-Repute-ID: aaaqeayeaudaocajsvb4gsergnhtywoi
	// MAIL FROM:   <bounces+aaaqeayeaudaocajsvb4gsergnhtywoi@bounces.acme.example>
}

// Ingestion finds the token in a bounce's envelope (in whatever case the
// MTAs left it) and gets the reference back, or an error for a forged one.
func ExampleSigner_Parse() {
	signer, _ := correlate.New(correlate.Keys{Sign: []byte("example-signing-key-0123456789abcdef")})

	token, ok := correlate.VERPToken("<BOUNCES+AAAQEAYEAUDAOCAJSVB4GSERGNHTYWOI@BOUNCES.ACME.EXAMPLE>")
	fmt.Println(token, ok)
	ref, err := signer.Parse(token)
	fmt.Println(ref, err)

	_, err = signer.Parse("aaaqeayeaudaocakkvb4gsergnhtywoi") // one character changed
	fmt.Println(errors.Is(err, correlate.ErrBadSignature))
	// Output:
	// aaaqeayeaudaocajsvb4gsergnhtywoi true
	// aaaqeayeaudaocaj <nil>
	// true
}

// Rotating keys: the new key signs, the old one still verifies the tokens
// already out there.
func ExampleNew_rotation() {
	old, _ := correlate.New(correlate.Keys{Sign: []byte("old-signing-key-0123456789abcdef")})
	ref := correlate.NewRef()
	token := old.Token(ref)

	rotated, _ := correlate.New(correlate.Keys{
		Sign:   []byte("new-signing-key-0123456789abcdef"),
		Verify: [][]byte{[]byte("new-signing-key-0123456789abcdef"), []byte("old-signing-key-0123456789abcdef")},
	})
	got, err := rotated.Parse(token)
	fmt.Println(got == ref, err)
	// Output:
	// true <nil>
}
