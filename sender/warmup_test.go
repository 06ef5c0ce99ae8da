package sender

import "testing"

func TestWarmupLimits(t *testing.T) {
	for _, c := range []struct {
		day                int
		perDay, perHour, m int
	}{
		{-3, 1000, 200, 4},
		{0, 1000, 200, 4},
		{1, 1000, 200, 4},
		{2, 1500, 200, 4},
		{3, 2000, 400, 7},
		{4, 3000, 400, 7},
		{5, 4500, 500, 9},
		{6, 6000, 500, 9},
		{7, 6500, 625, 11},
		{8, 7000, 750, 13},
		{10, 8000, 1000, 17},
		{11, 8000, 800, 14},
		{13, 9000, 1400, 24},
		{15, 10000, 2000, 34},
		{16, 10000, 1000, 17},
		{18, 12500, 2000, 34},
		{20, 15000, 3000, 50},
		{21, 15000, 3000, 50},
		{22, 16111, 3222, 54}, // 15,000 + 10,000/9 rounded; 3,000 + 2,000/9
		{30, 25000, 5000, 84},
		{31, 50000, 10000, 167},
		{32, 100000, 20000, 334},
		{61, warmupCap, warmupCap, (warmupCap + 59) / 60},
		{1 << 20, warmupCap, warmupCap, (warmupCap + 59) / 60},
	} {
		got := WarmupLimits(c.day)
		want := Limits{PerDay: c.perDay, PerHour: c.perHour, PerMinute: c.m}
		if got != want {
			t.Errorf("WarmupLimits(%d) = %+v, want %+v", c.day, got, want)
		}
	}
}

// The schedule never shrinks the day's volume from one day to the next.
func TestWarmupLimitsDayNeverFalls(t *testing.T) {
	prev := WarmupLimits(1)
	for d := 2; d <= 80; d++ {
		l := WarmupLimits(d)
		if l.PerDay < prev.PerDay {
			t.Errorf("day %d: %d/day after %d/day", d, l.PerDay, prev.PerDay)
		}
		if l.PerMinute*60 < l.PerHour {
			t.Errorf("day %d: %d/minute cannot carry %d/hour", d, l.PerMinute, l.PerHour)
		}
		prev = l
	}
}
