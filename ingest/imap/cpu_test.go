package imap

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is the CPU time used so far by this process and by Dovecot's
// imap processes (one per connection), to tell where a benchmark's wall
// time goes when the client and the server share the machine.
type cpuSample struct {
	self    time.Duration
	busy    time.Duration         // of the whole machine (/proc/stat), all cores
	dovecot map[int]time.Duration // by pid; absent when /proc cannot be read
}

func sampleCPU() cpuSample {
	var s cpuSample
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s.dovecot = dovecotIMAPCPU()
	s.busy = machineBusy()
	return s
}

// machineBusy returns the CPU time spent by the machine but idle and iowait
// since boot, all cores summed; 0 when /proc/stat cannot be read.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:8] { // user nice system idle iowait irq softirq
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// dovecotIMAPCPU returns utime+stime of every process named "imap" (Dovecot's
// imap service) by pid; nil when /proc is not there. Every such process is
// counted: other test runs' connections to the same Dovecot too.
func dovecotIMAPCPU() map[int]time.Duration {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	out := map[int]time.Duration{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || s[open+1:end] != "imap" {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[pid] = time.Duration(u+st) * tick
	}
	return out
}

// since returns this process's and Dovecot's CPU time between s0 and s,
// and the rest of the machine's (other processes: a benchmark run beside
// others measures little); a Dovecot process started after s0 counts from
// zero, one that ended before s is lost (the reader's connection lives
// until Run returns).
func (s cpuSample) since(s0 cpuSample) (self, dovecot, others time.Duration) {
	for pid, t := range s.dovecot {
		dovecot += t - s0.dovecot[pid]
	}
	self = s.self - s0.self
	return self, dovecot, max(0, s.busy-s0.busy-self-dovecot)
}
