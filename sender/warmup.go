package sender

// Limits are the caps of one pacing scope. A zero field means "no cap of
// this kind".
type Limits struct {
	PerDay    int // messages per day of the warm-up (the day counted from the domain's first send)
	PerHour   int // messages per hour, spread evenly: one every hour/PerHour
	PerMinute int // messages per minute, spread evenly: one every minute/PerMinute
	// Connections caps the deliveries in flight (Take without Done) at
	// once.
	Connections int
}

// warmupCap bounds the doubling after day 30 so that it never overflows
// (and keeps the emission interval hour/PerHour above zero).
const warmupCap = 1 << 30

// warmupRow is one row of the warm-up table of docs/THRESHOLDS.md: days
// from..to, the per-day and per-hour limits at the first and at the last
// day of the range.
type warmupRow struct {
	from, to       int
	dayLo, dayHi   int
	hourLo, hourHi int
}

// warmupTable is docs/THRESHOLDS.md "Warm-up schedule" (from the Tencent
// Cloud SES FAQ), for one IP.
var warmupTable = [...]warmupRow{
	{1, 1, 1000, 1000, 200, 200},
	{2, 2, 1500, 1500, 200, 200},
	{3, 3, 2000, 2000, 400, 400},
	{4, 4, 3000, 3000, 400, 400},
	{5, 5, 4500, 4500, 500, 500},
	{6, 10, 6000, 8000, 500, 1000},
	// QUIRK: the table's hour limit falls from 1,000 (day 10) to 800
	// (day 11); it is followed as written.
	{11, 15, 8000, 10000, 800, 2000},
	{16, 20, 10000, 15000, 1000, 3000},
	{21, 30, 15000, 25000, 3000, 5000},
}

// WarmupLimits returns the warm-up schedule's limits for one IP on day
// (day 1 is the day of the sender domain's first sent message; a day
// below 1 is day 1):
//
//   - days 1–5 as in the table;
//   - days 6–30, given as ranges, interpolated linearly across the days of
//     the range and rounded to the nearest message: day 6 = 6,000/day and
//     500/hour, day 8 = 7,000/750, day 10 = 8,000/1,000; day 21 =
//     15,000/3,000, day 30 = 25,000/5,000;
//   - day N > 30 doubles both limits of the day before ("doubled daily"
//     from day 30: day 31 = 50,000/10,000), capped at 2^30 so that it
//     never overflows — in practice no cap at all.
//
// PerMinute is PerHour/60 rounded up: it bounds the messages in any one
// minute, so that an hour's allowance can never go out in a burst. What
// spreads the hour evenly is the pacer's emission interval, hour/PerHour
// (18 s at 200/hour), which PerMinute's interval (15 s at 4/minute) never
// undercuts. Connections is 0: the schedule names no connection cap (the
// pacer's per-provider cap applies).
func WarmupLimits(day int) Limits {
	if day < 1 {
		day = 1
	}
	var perDay, perHour int
	if day > 30 {
		perDay, perHour = 25000, 5000
		for d := 30; d < day && (perDay < warmupCap || perHour < warmupCap); d++ {
			perDay, perHour = min(2*perDay, warmupCap), min(2*perHour, warmupCap)
		}
	} else {
		for _, r := range warmupTable {
			if day < r.from || day > r.to {
				continue
			}
			perDay = warmupInterpolate(day, r.from, r.to, r.dayLo, r.dayHi)
			perHour = warmupInterpolate(day, r.from, r.to, r.hourLo, r.hourHi)
			break
		}
	}
	return Limits{PerDay: perDay, PerHour: perHour, PerMinute: (perHour + 59) / 60}
}

// warmupInterpolate returns the value at day on the line from (from, lo) to
// (to, hi), rounded to the nearest integer (halves up).
func warmupInterpolate(day, from, to, lo, hi int) int {
	if to == from {
		return lo
	}
	num := (hi-lo)*(day-from)*2 + (to - from)
	return lo + num/(2*(to-from))
}
