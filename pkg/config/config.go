// Package config is the detector's one typed configuration in AWS: read from environment
// variables once at cold start, validated all at once. The variable names are constants
// that the CDK stack imports, so the stack and the function cannot drift apart; the replay
// command's flags take the same defaults from pkg/detect.
package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outsider-sec/outsider/pkg/awsid"
	"github.com/outsider-sec/outsider/pkg/detect"
)

// The state table's attribute names: the stack creates the table with them, and the
// function reads and writes them (pkg/dynamo).
const (
	TableKey     = "pk"  // partition key, a string: the detector's key
	TableValue   = "v"   // the value, binary
	TableExpires = "exp" // Unix seconds; the TTL attribute the stack enables
)

// Environment variables of the detector Lambda.
// InventoryRolePrefix names the read-only role the forwarder stack creates in each member
// account, one per region ("outsider-inventory-reader-eu-west-1"): a StackSet deploys to
// every region, and role names are global to an account.
const InventoryRolePrefix = "outsider-inventory-reader-"

// ImporterRolePrefix names the role the forwarder stack creates in each region of a member
// account for the detector to file that account's findings in its Security Hub
// (securityhub:BatchImportFindings on the account's default product only).
const ImporterRolePrefix = "outsider-findings-importer-"

const (
	EnvTable           = "OUTSIDER_TABLE"              // DynamoDB table of the state (required)
	EnvTopicARN        = "OUTSIDER_TOPIC_ARN"          // SNS topic for new findings (optional: no email)
	EnvSecurityAccount = "OUTSIDER_SECURITY_ACCOUNT"   // account importing the findings (required)
	EnvRegion          = "AWS_REGION"                  // set by Lambda: the Security Hub region
	EnvActivation      = "OUTSIDER_ACTIVATION"         // e.g. 14d
	EnvTraining        = "OUTSIDER_TRAINING"           // e.g. 30d
	EnvDedup           = "OUTSIDER_DEDUP"              // e.g. 7d
	EnvSeverity        = "OUTSIDER_SEVERITY"           // e.g. cli=CRITICAL,remote=LOW
	EnvEmailSeverity   = "OUTSIDER_EMAIL_MIN_SEVERITY" // the lowest severity emailed (default: every finding)
	EnvTrustedCIDRs    = "OUTSIDER_TRUSTED_CIDRS"      // comma-separated CIDRs
	EnvASNDB           = "OUTSIDER_ASN_DB"             // s3://bucket/key of a MaxMind-format ASN database (optional)
	EnvIPRanges        = "OUTSIDER_IP_RANGES"          // s3://bucket/key of a newer ip-ranges.json (optional)
	EnvCrossRegion     = "OUTSIDER_CROSS_REGION"       // "true": raise the cross-region title (off by default)
	EnvCanaryRole      = "OUTSIDER_CANARY_ROLE"        // the drill's canary role, in the security account (optional)
	EnvPresigned       = "OUTSIDER_PRESIGNED_FINDINGS" // "true": presigned-URL uses from outside are findings of their own (off by default)
	// "false": every finding is filed in the security account's Security Hub; by default a
	// member account's findings are filed in its own, through its importer role.
	EnvFileInMembers  = "OUTSIDER_FILE_IN_MEMBER_ACCOUNTS"
	EnvMemberAccounts = "OUTSIDER_MEMBER_ACCOUNTS" // comma-separated: the organisation's accounts (a VPC endpoint they own is inside)
)

// Environment variables of the refresher Lambda.
const (
	EnvRangesBucket = "OUTSIDER_RANGES_BUCKET" // where the refresher keeps ip-ranges.json (required)
	EnvRangesKey    = "OUTSIDER_RANGES_KEY"    // its key (default ip-ranges.json)
	EnvRangesURL    = "OUTSIDER_RANGES_URL"    // where AWS publishes it (default the AWS URL)

	EnvASNSources        = "OUTSIDER_ASN_SOURCES"        // URLs of keyless ASN tables to convert daily into OUTSIDER_ASN_DB
	EnvInventoryAccounts = "OUTSIDER_INVENTORY_ACCOUNTS" // accounts whose functions are listed hourly (comma-separated)
	EnvInventoryRegions  = "OUTSIDER_INVENTORY_REGIONS"  // in these regions (default the function's own)
	EnvSilenceHours      = "OUTSIDER_SILENCE_HOURS"      // report accounts heard from before, silent this long (0 or unset: none)
)

// Refresher is the refresher's configuration.
type Refresher struct {
	Ranges S3Location
	URL    string
	// Keyless ASN tables to convert, and where the database goes. Empty Sources: none.
	ASNSources []string
	ASNDB      S3Location
	// The inventory: where it is kept, whose functions, where. Empty Accounts: none.
	Table           string
	SecurityAccount string
	Accounts        []string
	Regions         []string
	// Silence: accounts the detector heard from and not since are reported (0: none).
	Silence time.Duration
}

// LoadRefresher reads the refresher's configuration, every problem at once.
func LoadRefresher(getenv func(string) string) (Refresher, error) {
	r := Refresher{Ranges: S3Location{Bucket: getenv(EnvRangesBucket), Key: getenv(EnvRangesKey)}, URL: getenv(EnvRangesURL)}
	var errs []error
	if r.Ranges.Bucket == "" {
		errs = append(errs, fmt.Errorf("%s: not set", EnvRangesBucket))
	}
	if r.Ranges.Key == "" {
		r.Ranges.Key = "ip-ranges.json"
	}
	if r.URL != "" && !strings.HasPrefix(r.URL, "https://") && !strings.HasPrefix(r.URL, "http://") {
		errs = append(errs, fmt.Errorf("%s: %q is not a URL", EnvRangesURL, r.URL))
	}
	if r.ASNSources = list(getenv(EnvASNSources)); len(r.ASNSources) > 0 {
		loc, err := ParseS3(getenv(EnvASNDB))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w (where the converted tables go)", EnvASNDB, err))
		}
		r.ASNDB = loc
		for _, u := range r.ASNSources {
			if !strings.HasPrefix(u, "https://") {
				errs = append(errs, fmt.Errorf("%s: %q is not an https:// URL", EnvASNSources, u))
			}
		}
	}
	r.Accounts = list(getenv(EnvInventoryAccounts))
	for _, a := range r.Accounts {
		if !awsid.IsAccountID(a) {
			errs = append(errs, fmt.Errorf("%s: %q is not a 12-digit account id", EnvInventoryAccounts, a))
		}
	}
	if r.Regions = list(getenv(EnvInventoryRegions)); len(r.Regions) == 0 {
		r.Regions = list(getenv(EnvRegion))
	}
	if v := getenv(EnvSilenceHours); v != "" {
		h, err := strconv.Atoi(v)
		if err != nil || h < 0 || h > 24*7 {
			errs = append(errs, fmt.Errorf("%s: %q is not a number of hours from 0 to 168", EnvSilenceHours, v))
		}
		r.Silence = time.Duration(h) * time.Hour
	}
	if r.Silence > 0 && len(r.Accounts) == 0 {
		if r.Table = getenv(EnvTable); r.Table == "" {
			errs = append(errs, fmt.Errorf("%s: not set (the register of accounts heard from is kept there)", EnvTable))
		}
	}
	if len(r.Accounts) > 0 {
		if r.Table = getenv(EnvTable); r.Table == "" {
			errs = append(errs, fmt.Errorf("%s: not set (the inventory is kept there)", EnvTable))
		}
		if r.SecurityAccount = getenv(EnvSecurityAccount); !awsid.IsAccountID(r.SecurityAccount) {
			errs = append(errs, fmt.Errorf("%s: %q is not a 12-digit account id", EnvSecurityAccount, r.SecurityAccount))
		}
	}
	if len(errs) > 0 {
		return r, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return r, nil
}

func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Config is the detector's configuration in AWS.
type Config struct {
	Table           string
	TopicARN        string
	EmailSeverity   string // the lowest severity emailed; "": every finding
	FileInMembers   bool   // file a member account's findings in its own Security Hub
	SecurityAccount string
	Region          string
	ASNDB           S3Location // zero: none
	IPRanges        S3Location // zero: the embedded snapshot
	Detect          detect.Config
}

// S3Location is an object in S3.
type S3Location struct{ Bucket, Key string }

// IsZero reports whether no location was given.
func (l S3Location) IsZero() bool { return l.Bucket == "" }

func (l S3Location) String() string { return "s3://" + l.Bucket + "/" + l.Key }

// ParseS3 reads "s3://bucket/key".
func ParseS3(s string) (S3Location, error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	b, k, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || b == "" || k == "" {
		return S3Location{}, fmt.Errorf("%q is not s3://BUCKET/KEY", s)
	}
	return S3Location{Bucket: b, Key: k}, nil
}

var (
	// arn:aws:sns:REGION:ACCOUNT:NAME, any partition.
	// Compiled when first used (a large program, at every start otherwise).
	topicRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$`)
	})
)

// Load reads the configuration through getenv (os.Getenv in Lambda) and returns every
// problem at once, each naming its variable.
func Load(getenv func(string) string) (Config, error) {
	c := Config{Detect: detect.Default()}
	var errs []error
	fail := func(name string, err error) { errs = append(errs, fmt.Errorf("%s: %w", name, err)) }

	if c.Table = getenv(EnvTable); c.Table == "" {
		fail(EnvTable, errors.New("not set"))
	}
	if c.EmailSeverity = getenv(EnvEmailSeverity); c.EmailSeverity != "" && !slices.Contains(detect.SeverityLabels(), c.EmailSeverity) {
		fail(EnvEmailSeverity, fmt.Errorf("%q is not one of %s", c.EmailSeverity, strings.Join(detect.SeverityLabels(), ", ")))
	}
	c.TopicARN = getenv(EnvTopicARN)
	if c.TopicARN != "" && !topicRE().MatchString(c.TopicARN) {
		fail(EnvTopicARN, fmt.Errorf("%q is not an SNS topic ARN", c.TopicARN))
	}
	if c.SecurityAccount = getenv(EnvSecurityAccount); !awsid.IsAccountID(c.SecurityAccount) {
		fail(EnvSecurityAccount, fmt.Errorf("%q is not a 12-digit account id", c.SecurityAccount))
	}
	if c.Detect.CanaryRole = getenv(EnvCanaryRole); c.Detect.CanaryRole != "" {
		c.Detect.CanaryAccount = c.SecurityAccount
	}
	if c.Region = getenv(EnvRegion); c.Region == "" {
		fail(EnvRegion, errors.New("not set"))
	}
	for _, p := range []struct {
		name string
		dst  *S3Location
	}{{EnvASNDB, &c.ASNDB}, {EnvIPRanges, &c.IPRanges}} {
		if v := getenv(p.name); v != "" {
			loc, err := ParseS3(v)
			if err != nil {
				fail(p.name, err)
			}
			*p.dst = loc
		}
	}
	switch v := getenv(EnvFileInMembers); v {
	case "", "true":
		c.FileInMembers = true
	case "false":
	default:
		fail(EnvFileInMembers, fmt.Errorf("%q is not true or false", v))
	}
	for _, b := range []struct {
		name string
		dst  *bool
	}{{EnvCrossRegion, &c.Detect.CrossRegion}, {EnvPresigned, &c.Detect.PresignedFindings}} {
		switch v := getenv(b.name); v {
		case "", "false":
		case "true":
			*b.dst = true
		default:
			fail(b.name, fmt.Errorf("%q is not true or false", v))
		}
	}
	for _, p := range []struct {
		name string
		set  func(*detect.Config, string) error
	}{
		{EnvActivation, func(d *detect.Config, v string) (err error) { d.Activation, err = detect.ParseDuration(v); return }},
		{EnvTraining, func(d *detect.Config, v string) (err error) { d.Training, err = detect.ParseDuration(v); return }},
		{EnvDedup, func(d *detect.Config, v string) (err error) { d.Dedup, err = detect.ParseDuration(v); return }},
		{EnvSeverity, func(d *detect.Config, v string) error { return d.ParseSeverities(v) }},
		{EnvTrustedCIDRs, func(d *detect.Config, v string) (err error) { d.Trusted, err = detect.ParseCIDRs(v); return }},
		{EnvMemberAccounts, func(d *detect.Config, v string) (err error) { d.Members, err = detect.ParseAccounts(v); return }},
	} {
		if v := getenv(p.name); v != "" {
			if err := p.set(&c.Detect, v); err != nil {
				fail(p.name, err)
			}
		}
	}
	if len(errs) == 0 {
		if err := c.Detect.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return c, nil
}
