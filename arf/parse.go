package arf

import (
	"io"
)

// Parse parses a complaint report from r. It returns ErrNotFeedback, cheaply,
// when r is not a complaint report: only the top-level header is read.
func Parse(r io.Reader) (*Report, error) {
	return nil, ErrNotFeedback
}
