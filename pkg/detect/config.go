package detect

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
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

// TitleSpec is everything that differs from one title to another. Titles are data: a new
// variation is a row here (and the signal that selects it, where the detector computes
// it); the decision, the default severities, the codes, the flags' help and the finding's
// text all iterate this table.
type TitleSpec struct {
	Title    Title
	Code     string // short and stable: finding ids, config, flags
	Severity string // default severity (ASFF label)
	// Signal selects the title: a call gets the first row of its scope, in order, whose
	// signal it carries. "" matches every call of the scope (the plain alert).
	Signal string
	// Inside: the row applies to calls from AWS addresses (the cross-region variation),
	// not to calls from outside.
	Inside bool
	// About is what the title adds to the finding's description, one sentence.
	About string
}

// TitleSpecs: the five titles in the order they are tried, then the cross-region one,
// which applies to calls from inside AWS only.
var TitleSpecs = []TitleSpec{
	{TitleRole, "role", "MEDIUM", SignalNotIssued, false,
		"Lambda did not issue this session of its execution role: another identity obtained the key, or the session name is not a function's."},
	{TitleCLI, "cli", "HIGH", SignalCLI, false,
		"The calls came from an interactive command-line or attack tool."},
	{TitleKnownASN, "known-asn", "INFORMATIONAL", SignalKnownASN, false,
		"The network is one the account's own people use: possibly a developer, still a credential outside its function."},
	{TitleInside, "token", "MEDIUM", SignalKeyInside, false,
		"The same key was also used by the function inside AWS: one live credential in two places."},
	{TitleRemote, "remote", "INFORMATIONAL", "", false, ""},
	{TitleCrossRegion, "cross-region", "LOW", SignalCrossRegion, true,
		"The address is an AWS address of another region than the function's: a machine in AWS that is not the function."},
}

// Titles lists every title, in the order of TitleSpecs.
var Titles = func() []Title {
	out := make([]Title, len(TitleSpecs))
	for i, s := range TitleSpecs {
		out[i] = s.Title
	}
	return out
}()

// Spec returns the title's row of TitleSpecs.
func (t Title) Spec() (TitleSpec, bool) {
	for _, s := range TitleSpecs {
		if s.Title == t {
			return s, true
		}
	}
	return TitleSpec{}, false
}

// Code is the title's short stable name, used in finding ids, config and flags.
func (t Title) Code() string {
	if s, ok := t.Spec(); ok {
		return s.Code
	}
	return "unknown"
}

// TitleCodes lists every title's code, for help and error texts.
func TitleCodes() string {
	codes := make([]string, len(TitleSpecs))
	for i, s := range TitleSpecs {
		codes[i] = s.Code
	}
	return strings.Join(codes, ", ")
}

// TitleOf is the decision: the first title of the scope (calls from outside, or from AWS
// addresses for the inside variations) whose signal the call carries; "" when none.
func TitleOf(signals []string, inside bool) Title {
	for _, s := range TitleSpecs {
		if s.Inside == inside && (s.Signal == "" || slices.Contains(signals, s.Signal)) {
			return s.Title
		}
	}
	return ""
}

// Severity labels of Security Hub (ASFF Severity.Label).
var severityLabels = []string{"INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"}

// SeverityLabels are Security Hub's severity labels, lowest first.
func SeverityLabels() []string { return slices.Clone(severityLabels) }

// SeverityAtLeast reports whether severity label s is min or above ("" min: any).
func SeverityAtLeast(s, min string) bool {
	return min == "" || slices.Index(severityLabels, s) >= slices.Index(severityLabels, min)
}

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
	// Members are the organisation's accounts: a VPC endpoint one of them owns is ours.
	// Every account whose own trail the detector reads is ours as well, from its first
	// record on.
	Members []string
	// MaxList bounds every list a finding keeps (addresses, calls, user agents, keys).
	MaxList int
	// TrainOnly learns baselines and raises nothing: a backfill of history.
	TrainOnly bool
	// CrossRegion raises TitleCrossRegion. Off by default until measured on real traffic.
	CrossRegion bool
	// PresignedFindings makes presigned-URL uses of a function's token from outside
	// findings of their own. Off by default: the function's customers make them.
	PresignedFindings bool
	// Canary: the drill's function role (DESIGN §10) in its account, the security account.
	// Its findings are marked as a drill, INFORMATIONAL, and need no activation. Only that
	// role in that account: a role of the same name elsewhere is anyone's.
	CanaryRole, CanaryAccount string
}

// Default returns the default periods, severities and bounds.
func Default() Config {
	return Config{
		Activation: 14 * 24 * time.Hour,
		Training:   30 * 24 * time.Hour,
		Dedup:      7 * 24 * time.Hour,
		Severity: func() map[Title]string {
			m := make(map[Title]string, len(TitleSpecs))
			for _, s := range TitleSpecs {
				m[s.Title] = s.Severity
			}
			return m
		}(),
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
	if c.Dedup < time.Minute {
		errs = append(errs, fmt.Errorf("deduplication period %s must be at least a minute", c.Dedup))
	}
	for _, a := range c.Members {
		if len(a) != 12 || strings.Trim(a, "0123456789") != "" {
			errs = append(errs, fmt.Errorf("member account %q is not a 12-digit account id", a))
		}
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

// ParseAccounts reads a comma-separated list of account ids.
func ParseAccounts(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if len(f) != 12 || strings.Trim(f, "0123456789") != "" {
			return nil, fmt.Errorf("%q is not a 12-digit account id", f)
		}
		out = append(out, f)
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
			return fmt.Errorf("%q is not a title code (%s)", code, TitleCodes())
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
