package spool

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math"
	"os"
)

// magic starts every record. 0xFF and 0xFE never occur in UTF-8, so a JSON
// payload cannot contain the marker and resynchronisation after corruption
// does not stop inside one.
const magic = "\xffRS\xfe"

const (
	headerSize       = 12 // magic, length, CRC-32C
	maxPayload int64 = math.MaxUint32
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeRecord returns the record for payload: magic, big-endian length,
// CRC-32C over the length bytes and the payload, payload.
func encodeRecord(payload []byte) []byte {
	rec := make([]byte, headerSize+len(payload))
	copy(rec, magic)
	binary.BigEndian.PutUint32(rec[4:8], uint32(len(payload)))
	crc := crc32.Update(0, castagnoli, rec[4:8])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.BigEndian.PutUint32(rec[8:12], crc)
	copy(rec[headerSize:], payload)
	return rec
}

// checkHeader reports whether hdr starts a record that fits in avail bytes
// (header included), and the length of its payload.
func checkHeader(hdr []byte, avail int64) (length int64, ok bool) {
	if string(hdr[:4]) != magic {
		return 0, false
	}
	length = int64(binary.BigEndian.Uint32(hdr[4:8]))
	return length, headerSize+length <= avail
}

// verifyAt reports whether a complete, valid record starts at off and ends at
// or before end, and its total size. It streams the payload through the
// checksum, so a corrupt length costs no allocation.
func verifyAt(f *os.File, off, end int64) (size int64, ok bool, err error) {
	var hdr [headerSize]byte
	if end-off < headerSize {
		return 0, false, nil
	}
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		if err == io.EOF {
			return 0, false, nil
		}
		return 0, false, err
	}
	length, ok := checkHeader(hdr[:], end-off)
	if !ok {
		return 0, false, nil
	}
	h := crc32.New(castagnoli)
	h.Write(hdr[4:8])
	n, err := io.Copy(h, io.NewSectionReader(f, off+headerSize, length))
	if err != nil {
		return 0, false, err
	}
	if n != length || h.Sum32() != binary.BigEndian.Uint32(hdr[8:12]) {
		return 0, false, nil
	}
	return headerSize + length, true, nil
}

// resync returns the offset of the first valid record that starts in
// [from, end), or -1 if there is none.
func resync(f *os.File, from, end int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for off := from; end-off >= headerSize; {
		n := int(min(int64(len(buf)), end-off))
		if _, err := f.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return -1, err
		}
		for i := 0; ; {
			j := bytes.Index(buf[i:n], []byte(magic))
			if j < 0 {
				break
			}
			cand := off + int64(i+j)
			_, ok, err := verifyAt(f, cand, end)
			if err != nil {
				return -1, err
			}
			if ok {
				return cand, nil
			}
			i += j + 1
		}
		if off+int64(n) >= end {
			break
		}
		// Overlap so that a marker across the chunk boundary is seen.
		off += int64(max(n-(len(magic)-1), 1))
	}
	return -1, nil
}
