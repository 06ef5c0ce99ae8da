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
	dovecot map[int]time.Duration // by pid; absent when /proc cannot be read
}

func sampleCPU() cpuSample {
	var s cpuSample
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	s.dovecot = dovecotIMAPCPU()
	return s
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

// since returns this process's and Dovecot's CPU time between s0 and s; a
// Dovecot process started after s0 counts from zero, one that ended before s
// is lost (the reader's connection lives until Run returns).
func (s cpuSample) since(s0 cpuSample) (self, dovecot time.Duration) {
	for pid, t := range s.dovecot {
		dovecot += t - s0.dovecot[pid]
	}
	return s.self - s0.self, dovecot
}
