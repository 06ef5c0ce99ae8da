package metrics

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// GroupBy names one dimension statistics can be grouped by.
type GroupBy string

// The dimensions of GET /v1/stats. Day and Hour are UTC buckets whose key
// value is the RFC 3339 time of the bucket start.
const (
	GroupAccount      GroupBy = "account"
	GroupSenderDomain GroupBy = "sender_domain"
	GroupISP          GroupBy = "isp"
	GroupCampaign     GroupBy = "campaign"
	GroupSendingIP    GroupBy = "sending_ip"
	GroupCategory     GroupBy = "category"
	GroupDay          GroupBy = "day"
	GroupHour         GroupBy = "hour"
)

// GroupBys lists every dimension.
var GroupBys = []GroupBy{GroupAccount, GroupSenderDomain, GroupISP, GroupCampaign,
	GroupSendingIP, GroupCategory, GroupDay, GroupHour}

// ParseGroupBy parses a comma-separated list of dimensions; empty gives none.
// A dimension named twice is an error, as is an unknown one.
func ParseGroupBy(s string) ([]GroupBy, error) {
	if strings.TrimSpace(s) == "" {
		return []GroupBy{}, nil
	}
	var out []GroupBy
	seen := map[GroupBy]bool{}
	for _, part := range strings.Split(s, ",") {
		g := GroupBy(strings.TrimSpace(part))
		if !slices.Contains(GroupBys, g) {
			names := make([]string, len(GroupBys))
			for i, k := range GroupBys {
				names[i] = string(k)
			}
			return nil, fmt.Errorf("metrics: unknown group_by %q (known: %s)", g, strings.Join(names, ", "))
		}
		if seen[g] {
			return nil, fmt.Errorf("metrics: group_by %q named twice", g)
		}
		seen[g] = true
		out = append(out, g)
	}
	return out, nil
}

// StatsQuery selects events by time ([From, To): From inclusive, To
// exclusive) and account, and groups them.
type StatsQuery struct {
	From, To time.Time
	// Account restricts to one account; empty means all accounts (admin).
	Account string
	GroupBy []GroupBy
	// MaxGroups caps the groups returned, the first ones in key order;
	// 0: no cap. The store applies it in the query (LIMIT), so a long range
	// grouped finely is not all sent and held in memory; the totals are
	// still over the whole selection.
	MaxGroups int
}

// Counts are the event counts of one group. Opens and clicks are unique per
// (account, message_id, recipient) — human and machine opens separately, so
// a message with both counts once in each — and an open or click without a
// message_id counts per event; every other kind counts per event. Bounces
// that are not hard (soft or undetermined) count as soft.
//
// An open without a machine verdict (Event.Machine nil) counts as human, as
// every open did before the verdict had three states: OpenedHuman is the
// opens not known to be a machine's, and OpenedUnverified the part of them
// that nobody judged (so OpenedUnverified <= OpenedHuman). A rising
// unverified share means the open rate rests on opens nobody has classified.
type Counts struct {
	Sent             int64 `json:"sent"`
	Delivered        int64 `json:"delivered"`
	Deferred         int64 `json:"deferred"`
	BouncedHard      int64 `json:"bounced_hard"`
	BouncedSoft      int64 `json:"bounced_soft"`
	Complained       int64 `json:"complained"`
	OpenedHuman      int64 `json:"opened_human"`
	OpenedMachine    int64 `json:"opened_machine"`
	OpenedUnverified int64 `json:"opened_unverified"`
	Clicked          int64 `json:"clicked"`
	Unsubscribed     int64 `json:"unsubscribed"`
	Dropped          int64 `json:"dropped"`
}

// Rates are computed from Counts; nil when the denominator is zero. They
// are raw rates over the range: minimum samples and opening windows are the
// rule engine's business.
type Rates struct {
	BounceRate       *float64 `json:"bounce_rate"`        // bounced_hard / sent
	ComplaintRate    *float64 `json:"complaint_rate"`     // complained / delivered
	OpenRate         *float64 `json:"open_rate"`          // opened_human / delivered
	MachineOpenShare *float64 `json:"machine_open_share"` // opened_machine / all opens
}

// Plus returns the sums of c's and o's counts: the counts of two sets of
// events that have none in common (for unique counts, no key in common).
func (c Counts) Plus(o Counts) Counts {
	c.Sent += o.Sent
	c.Delivered += o.Delivered
	c.Deferred += o.Deferred
	c.BouncedHard += o.BouncedHard
	c.BouncedSoft += o.BouncedSoft
	c.Complained += o.Complained
	c.OpenedHuman += o.OpenedHuman
	c.OpenedMachine += o.OpenedMachine
	c.OpenedUnverified += o.OpenedUnverified
	c.Clicked += o.Clicked
	c.Unsubscribed += o.Unsubscribed
	c.Dropped += o.Dropped
	return c
}

// Rates computes the rates of c.
func (c Counts) Rates() Rates {
	return Rates{
		BounceRate:       ratio(c.BouncedHard, c.Sent),
		ComplaintRate:    ratio(c.Complained, c.Delivered),
		OpenRate:         ratio(c.OpenedHuman, c.Delivered),
		MachineOpenShare: ratio(c.OpenedMachine, c.OpenedHuman+c.OpenedMachine),
	}
}

func ratio(n, d int64) *float64 {
	if d == 0 {
		return nil
	}
	r := float64(n) / float64(d)
	return &r
}

// Group is one row of a statistics result: the values of the grouped
// dimensions (by their GroupBy names) and the counts.
type Group struct {
	Key map[GroupBy]string
	Counts
}

// StatsResult holds the groups, in ascending order of their key values
// taken in GroupBy order, and the totals over the whole selection.
type StatsResult struct {
	Groups []Group
	Totals Counts
	// Truncated: there were more than StatsQuery.MaxGroups groups, and only
	// the first MaxGroups are in Groups.
	Truncated bool
}

// Appender stores events. It is idempotent on (account, event_id): an event
// appended twice, in one call or in two, is stored once.
type Appender interface {
	Append(ctx context.Context, events []Event) error
}

// StatsReader computes statistics over stored events.
type StatsReader interface {
	Stats(ctx context.Context, q StatsQuery) (*StatsResult, error)
}

// KnownChecker tells which of the given keys are already stored, so intake
// can report duplicates. The events passed in are the candidates; a backend
// may use their times to narrow its search.
type KnownChecker interface {
	Known(ctx context.Context, events []Event) (map[Key]bool, error)
}

// Store is what a backend provides. Consumers should depend on the narrow
// interfaces above, not on Store.
type Store interface {
	Appender
	StatsReader
	KnownChecker
	// Ping reports whether the backend answers, for /readyz.
	Ping(ctx context.Context) error
	Close() error
}
