// Package rules is the rule engine (issue 13): it reads rates per scope
// from the store, evaluates the rules (a YAML file; the built-in defaults
// come from docs/THRESHOLDS.md) into flags, and turns flags and the warm-up
// schedule into throttle decisions for the senders.
package rules

import "time"

// Scope is what a rate, a flag or a decision is about. Empty fields are
// not part of it: {SenderDomain: "news.acme.example"} is the whole sender
// domain, {SenderDomain: "news.acme.example", ISP: "gmail"} its mail to
// Gmail.
type Scope struct {
	Account      string `json:"account,omitempty" yaml:"account,omitempty"`
	SenderDomain string `json:"sender_domain,omitempty" yaml:"sender_domain,omitempty"`
	SendingIP    string `json:"sending_ip,omitempty" yaml:"sending_ip,omitempty"`
	ISP          string `json:"isp,omitempty" yaml:"isp,omitempty"`
	Campaign     string `json:"campaign,omitempty" yaml:"campaign,omitempty"`
	Category     string `json:"category,omitempty" yaml:"category,omitempty"`
}

// Severity of a flag, in rising order.
type Severity string

const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
	SeverityPause    Severity = "pause"
)

// Flag is a rule that fired for a scope, with everything that triggered
// it.
type Flag struct {
	Rule      string   `json:"rule"`
	Scope     Scope    `json:"scope"`
	Severity  Severity `json:"severity"`
	Value     float64  `json:"value"`
	Threshold float64  `json:"threshold"`
	Sample    int64    `json:"sample"`
	Window    string   `json:"window"` // e.g. "7d", "24h-7d"
	// Action is what a response-pattern rule asks of the senders (hold,
	// slow, pause; "" for a rate rule, whose severity decides), and For
	// how long.
	Action Action        `json:"action,omitempty"`
	For    time.Duration `json:"-"`
	// Limits a slow action sets (0: unchanged).
	MinuteLimit    int       `json:"minute_limit,omitempty"`
	MaxConnections int       `json:"max_connections,omitempty"`
	Since          time.Time `json:"since"`
}

// Action is what a decision tells the senders.
type Action string

const (
	ActionAdvance  Action = "advance"
	ActionHold     Action = "hold"
	ActionSlow     Action = "slow"
	ActionStepBack Action = "step_back"
	ActionPause    Action = "pause"
	ActionResume   Action = "resume"
)
