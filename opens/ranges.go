package opens

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// Ranges is a set of IP address ranges, such as Apple's published proxy
// egress ranges. The zero value is empty. It is read-only once built, so
// safe for many goroutines.
type Ranges struct {
	v4, v6 []span // sorted by start, merged: no two overlap or touch
}

// span is the closed range [lo, hi] of addresses of one family.
type span struct{ lo, hi netip.Addr }

// ParseRanges reads Apple's egress-ip-ranges.csv, published for iCloud
// Private Relay and used by Mail Privacy Protection's image proxy: one
// range a line, "prefix,country,region,city,postal", e.g.
//
//	172.224.224.0/27,US,US-CA,Los Angeles,
//	2a02:26f7:b3c0:4000::/64,GB,GB-EN,London,
//
// Only the first field counts; the others may be missing. IPv4 and IPv6
// prefixes are read with net/netip; a bare address is a range of one.
// Blank lines and lines starting with # are skipped, and so is a UTF-8 byte
// order mark. A line whose first field is not a prefix is an error naming
// the line number ("opens: line 3: ..."). Overlapping ranges are merged.
func ParseRanges(r io.Reader) (*Ranges, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	var rs Ranges
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if line == 1 {
			text = strings.TrimPrefix(text, "\ufeff")
		}
		text = strings.TrimSpace(text)
		if text == "" || text[0] == '#' {
			continue
		}
		first, _, _ := strings.Cut(text, ",")
		first = strings.TrimSpace(first)
		p, err := parsePrefix(first)
		if err != nil {
			return nil, fmt.Errorf("opens: line %d: %q is not an IP prefix (want e.g. 172.224.224.0/27 or 2a02:26f7::/48 as the first field)", line, first)
		}
		s := span{lo: p.Masked().Addr(), hi: lastAddr(p)}
		if s.lo.Is4() {
			rs.v4 = append(rs.v4, s)
		} else {
			rs.v6 = append(rs.v6, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("opens: after line %d: %w", line, err)
	}
	rs.v4, rs.v6 = merge(rs.v4), merge(rs.v6)
	return &rs, nil
}

// LoadRanges reads a ranges file with ParseRanges; errors name the file.
func LoadRanges(name string) (*Ranges, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("opens: apple ranges: %w", err)
	}
	defer f.Close()
	rs, err := ParseRanges(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return rs, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("not an address")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, err
	}
	if p.Addr().Is4In6() {
		// ::ffff:a.b.c.d/n: the IPv4 range it names, when n covers the
		// mapping's 96 bits.
		if p.Bits() < 96 {
			return p, fmt.Errorf("a mapped IPv4 prefix shorter than 96 bits")
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96), nil
	}
	return p, nil
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// merge sorts spans and joins those that overlap or touch.
func merge(spans []span) []span {
	if len(spans) == 0 {
		return nil
	}
	slices.SortFunc(spans, func(a, b span) int {
		return cmp.Or(a.lo.Compare(b.lo), a.hi.Compare(b.hi))
	})
	out := spans[:1]
	for _, s := range spans[1:] {
		last := &out[len(out)-1]
		if next := last.hi.Next(); s.lo.Compare(last.hi) <= 0 || (next.IsValid() && s.lo == next) {
			if s.hi.Compare(last.hi) > 0 {
				last.hi = s.hi
			}
			continue
		}
		out = append(out, s)
	}
	return slices.Clip(out)
}

// Contains reports whether ip is in one of the ranges. An IPv4-mapped IPv6
// address counts as its IPv4 address; a zone is ignored. A nil Ranges
// contains nothing.
func (r *Ranges) Contains(ip netip.Addr) bool {
	if r == nil || !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	spans := r.v6
	if ip.Is4() {
		spans = r.v4
	}
	// The first span ending at or after ip is the only one that can hold it.
	i, _ := slices.BinarySearchFunc(spans, ip, func(s span, ip netip.Addr) int { return s.hi.Compare(ip) })
	return i < len(spans) && spans[i].lo.Compare(ip) <= 0
}

// Len is the number of ranges after merging.
func (r *Ranges) Len() int {
	if r == nil {
		return 0
	}
	return len(r.v4) + len(r.v6)
}
