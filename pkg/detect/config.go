package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Title is the title of a finding: one per variation of the alert.
type Title string

// The five titles, in the order they are tried: a call gets the first whose condition holds.
const (
	TitleRole     Title = "Suspicious usage of AWS Lambda's role"
	TitleCLI      Title = "Remote command line usage of AWS Lambda's token"
	TitleKnownASN Title = "Usage of AWS Lambda's token from known ASN"
	TitleInside   Title = "Suspicious usage of AWS Lambda's token"
	TitleRemote   Title = "Remote usage of AWS Lambda's token"

	// TitleCrossRegion is beyond the five titles, and off by default: a function's token used from
	// an AWS address in another region than the function's (an attacker's cloud machine).
	TitleCrossRegion Title = "Usage of AWS Lambda's token from another AWS region"
)

// Titles lists every title: the five in priority order, then the cross-region one,
// which applies to calls from inside AWS only.
var Titles = []Title{TitleRole, TitleCLI, TitleKnownASN, TitleInside, TitleRemote, TitleCrossRegion}

// Code is the title's short stable name, used in finding ids, config and flags.
func (t Title) Code() string {
	switch t {
	case TitleRole:
		return "role"
	case TitleCLI:
		return "cli"
	case TitleKnownASN:
		return "known-asn"
	case TitleInside:
		return "token"
	case TitleRemote:
		return "remote"
	case TitleCrossRegion:
		return "cross-region"
	}
	return "unknown"
}

// Severity labels of Security Hub (ASFF Severity.Label).
var severityLabels = []string{"INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"}

// Config is every setting of the decision. The zero value is not valid: start from Default.
type Config struct {
	// Activation: no finding for an account until it has been observed this long.
	Activation time.Duration
	// Training: baselines count only what was seen within this period.
	Training time.Duration
	// Dedup: one finding per (account, subject, title) per this period.
	Dedup time.Duration
	// Severity of each title (ASFF labels).
	Severity map[Title]string
	// Trusted are the operator's own networks: calls from them are not "outside".
	Trusted []netip.Prefix
	// MaxList bounds every list a finding keeps (addresses, calls, user agents, keys).
	MaxList int
	// TrainOnly learns baselines and raises nothing: a backfill of history.
	TrainOnly bool
	// CrossRegion raises TitleCrossRegion. Off by default until measured on real traffic.
	CrossRegion bool
	// PresignedFindings makes presigned-URL uses of a function's token from outside
	// findings of their own. Off by default: the function's customers make them.
	PresignedFindings bool
}

// Default returns the default periods, severities and bounds.
func Default() Config {
	return Config{
		Activation: 14 * 24 * time.Hour,
		Training:   30 * 24 * time.Hour,
		Dedup:      7 * 24 * time.Hour,
		Severity: map[Title]string{
			TitleRole:        "MEDIUM",
			TitleCLI:         "HIGH",
			TitleKnownASN:    "INFORMATIONAL",
			TitleInside:      "MEDIUM",
			TitleRemote:      "INFORMATIONAL",
			TitleCrossRegion: "LOW",
		},
		MaxList: 20,
	}
}

// Validate returns every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Activation < 0 {
		errs = append(errs, fmt.Errorf("activation period %s is negative", c.Activation))
	}
	if c.Training < 24*time.Hour {
		// A fact is kept as its first and last sighting of each day: exact for any
		// training period of a day or more.
		errs = append(errs, fmt.Errorf("training period %s must be at least a day", c.Training))
	}
	if c.Dedup <= 0 {
		errs = append(errs, fmt.Errorf("deduplication period %s must be positive", c.Dedup))
	}
	for _, t := range Titles {
		s, ok := c.Severity[t]
		if !ok {
			errs = append(errs, fmt.Errorf("no severity for %q", t))
		} else if !validSeverity(s) {
			errs = append(errs, fmt.Errorf("severity %q of %s is not one of %s", s, t.Code(), strings.Join(severityLabels, ", ")))
		}
	}
	if c.MaxList < 1 {
		errs = append(errs, fmt.Errorf("list bound %d must be at least 1", c.MaxList))
	}
	return errors.Join(errs...)
}

func validSeverity(s string) bool {
	for _, l := range severityLabels {
		if s == l {
			return true
		}
	}
	return false
}

// ParseDuration reads a period: Go durations ("36h", "90m") and whole days ("14d").
func ParseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use 14d, 36h, 90m)", s)
	}
	return d, nil
}

// ParseCIDRs reads a comma-separated list of prefixes ("203.0.113.0/24, 2001:db8::/32").
// A bare address is taken as a single-address prefix.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an address", f)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR", f)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ParseSeverities reads "cli=CRITICAL,remote=LOW" into c.Severity.
func (c *Config) ParseSeverities(s string) error {
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		code, label, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("%q is not title=SEVERITY", f)
		}
		var t Title
		for _, tt := range Titles {
			if tt.Code() == strings.TrimSpace(code) {
				t = tt
			}
		}
		if t == "" {
			return fmt.Errorf("%q is not a title code (role, cli, known-asn, token, remote, cross-region)", code)
		}
		label = strings.ToUpper(strings.TrimSpace(label))
		if !validSeverity(label) {
			return fmt.Errorf("%q is not a severity (%s)", label, strings.Join(severityLabels, ", "))
		}
		m := make(map[Title]string, len(c.Severity))
		for k, v := range c.Severity {
			m[k] = v
		}
		m[t] = label
		c.Severity = m
	}
	return nil
}
