package main

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/outsider-sec/outsider/pkg/config"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/suppress"
)

// Context keys of cdk.json (and -c on the command line): every setting a user changes.
const (
	ctxEmail          = "notificationEmail" // who gets an email per new finding; empty: no subscription
	ctxTrustedCIDRs   = "trustedCidrs"      // comma-separated
	ctxActivation     = "activation"        // e.g. 14d
	ctxTraining       = "training"          // e.g. 30d
	ctxDedup          = "dedup"             // e.g. 7d
	ctxSeverity       = "severity"          // e.g. cli=CRITICAL
	ctxOrganizationID = "organizationId"    // o-xxxxxxxxxx: member accounts of the organisation may send events
	ctxMemberAccounts = "memberAccounts"    // comma-separated account ids, for accounts outside an organisation
	ctxASNDB          = "asnDb"             // s3://bucket/key of a MaxMind-format ASN database
	ctxASNSources     = "asnSources"        // URLs of keyless ASN tables the refresher converts daily (into asnDb, or the stack's bucket)
	ctxBatchSize      = "batchSize"         // SQS records per invocation
	ctxCrossRegion    = "crossRegion"       // "true": the cross-region title (off by default)
	ctxPresigned      = "presignedFindings" // "true": presigned-URL uses from outside are findings of their own
	ctxMaxConcurrency = "maxConcurrency"    // containers consuming the queue at once (2 to 1000)
	ctxInvAccounts    = "inventoryAccounts" // member accounts whose functions are listed hourly (the security account always is)
	ctxInvRegions     = "inventoryRegions"  // in these regions (default: the stack's)
	// "true": the refresher lists functions hourly (off by default: CloudTrail teaches every
	// function that runs). lambda:ListFunctions returns each function's environment
	// variables, where many teams keep secrets: turned on, the refresher's role can read
	// them in every listed account.
	ctxInventory = "inventory"
	// "false": no reserved concurrency (for accounts whose concurrency quota is too small
	// to reserve maxConcurrency + 1 and keep the 100 unreserved Lambda requires).
	ctxReserve = "reserveConcurrency"
	// Hours without a record from an account before its alarm (default 6; 0: no alarms).
	ctxSilence = "silenceHours"
	// The lowest severity that is emailed (default LOW: INFORMATIONAL findings are in
	// Security Hub only).
	ctxEmailSeverity = "emailSeverity"
	// Who gets the operational alarms (default: notificationEmail), on a topic of their own.
	ctxAlarmEmail = "alarmEmail"
	// Future findings to suppress, the Security Hub way (automation rules): see pkg/suppress.
	ctxSuppress = "suppress"
	// The ARN of the principal that may run `outsider drill`: the stack then has the
	// canary function (a role that may do nothing), invocable by that principal only.
	ctxDrill = "drillPrincipal"
)

// Settings are the deployment's choices, read from the CDK context.
type Settings struct {
	Suppress       []suppress.Entry
	DrillPrincipal string
	Email          string
	AlarmEmail     string
	EmailSeverity  string
	TrustedCIDRs   string
	Activation     string
	Training       string
	Dedup          string
	Severity       string
	OrganizationID string
	MemberAccounts []string
	ASNDB          string
	ASNSources     string
	BatchSize      int
	MaxConcurrency int
	CrossRegion    string
	Presigned      string

	Inventory         bool
	InventoryAccounts []string
	InventoryRegions  string
	Reserve           bool
	SilenceHours      int
}

var (
	emailRE = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
	orgRE   = regexp.MustCompile(`^o-[a-z0-9]{10,32}$`)
	acctRE  = regexp.MustCompile(`^[0-9]{12}$`)
)

// readSettings reads and validates the context; get returns "" for an absent key.
func readSettings(get func(string) string) (Settings, error) {
	s := Settings{
		Email: get(ctxEmail), TrustedCIDRs: get(ctxTrustedCIDRs), Activation: orDefault(get(ctxActivation), "14d"),
		Training: orDefault(get(ctxTraining), "30d"), Dedup: orDefault(get(ctxDedup), "7d"), Severity: get(ctxSeverity),
		OrganizationID: get(ctxOrganizationID), ASNDB: get(ctxASNDB), BatchSize: 500, MaxConcurrency: 10, CrossRegion: get(ctxCrossRegion),
		ASNSources: get(ctxASNSources), Presigned: get(ctxPresigned),
		AlarmEmail: orDefault(get(ctxAlarmEmail), get(ctxEmail)), EmailSeverity: orDefault(get(ctxEmailSeverity), "LOW"),
	}
	var errs []error
	if s.Email != "" && !emailRE.MatchString(s.Email) {
		errs = append(errs, fmt.Errorf("%s: %q is not an email address", ctxEmail, s.Email))
	}
	if s.AlarmEmail != "" && !emailRE.MatchString(s.AlarmEmail) {
		errs = append(errs, fmt.Errorf("%s: %q is not an email address", ctxAlarmEmail, s.AlarmEmail))
	}
	if !slices.Contains(detect.SeverityLabels(), s.EmailSeverity) {
		errs = append(errs, fmt.Errorf("%s: %q is not one of %s", ctxEmailSeverity, s.EmailSeverity, strings.Join(detect.SeverityLabels(), ", ")))
	}
	if s.OrganizationID != "" && !orgRE.MatchString(s.OrganizationID) {
		errs = append(errs, fmt.Errorf("%s: %q is not an organization id (o-…)", ctxOrganizationID, s.OrganizationID))
	}
	accounts := func(key string) []string {
		var out []string
		for _, a := range strings.Split(get(key), ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if !acctRE.MatchString(a) {
				errs = append(errs, fmt.Errorf("%s: %q is not a 12-digit account id", key, a))
			}
			out = append(out, a)
		}
		return out
	}
	if s.DrillPrincipal = get(ctxDrill); s.DrillPrincipal != "" && !principalARN.MatchString(s.DrillPrincipal) {
		errs = append(errs, fmt.Errorf("%s: %q is not the ARN of an IAM user or role (arn:aws:iam::ACCOUNT:user/NAME or :role/NAME)", ctxDrill, s.DrillPrincipal))
	}
	if sup, err := suppress.Parse(get(ctxSuppress)); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", ctxSuppress, err))
	} else {
		s.Suppress = sup
	}
	s.MemberAccounts = accounts(ctxMemberAccounts)
	s.InventoryAccounts = accounts(ctxInvAccounts)
	if len(s.InventoryAccounts) == 0 {
		s.InventoryAccounts = s.MemberAccounts
	}
	switch v := get(ctxInventory); v {
	case "", "false":
	case "true":
		s.Inventory = true
	default:
		errs = append(errs, fmt.Errorf("%s: %q is neither true nor false", ctxInventory, v))
	}
	s.SilenceHours = 6
	if v := get(ctxSilence); v != "" {
		if _, err := fmt.Sscanf(v, "%d", &s.SilenceHours); err != nil || s.SilenceHours < 0 || s.SilenceHours > 24*7 {
			errs = append(errs, fmt.Errorf("%s: %q is not a number of hours from 0 to 168", ctxSilence, v))
		}
	}
	switch v := get(ctxReserve); v {
	case "", "true":
		s.Reserve = true
	case "false":
	default:
		errs = append(errs, fmt.Errorf("%s: %q is neither true nor false", ctxReserve, v))
	}
	// The ASN tables decide what a call's network is: fetched over TLS only.
	for _, u := range strings.Split(s.ASNSources, ",") {
		if u = strings.TrimSpace(u); u != "" && !strings.HasPrefix(u, "https://") {
			errs = append(errs, fmt.Errorf("%s: %q is not an https:// URL", ctxASNSources, u))
		}
	}
	s.InventoryRegions = get(ctxInvRegions)
	if v := get(ctxBatchSize); v != "" {
		if _, err := fmt.Sscanf(v, "%d", &s.BatchSize); err != nil || s.BatchSize < 1 || s.BatchSize > 10000 {
			errs = append(errs, fmt.Errorf("%s: %q is not a number from 1 to 10000", ctxBatchSize, v))
		}
	}
	if v := get(ctxMaxConcurrency); v != "" {
		// The event source mapping's bounds.
		// https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html
		if _, err := fmt.Sscanf(v, "%d", &s.MaxConcurrency); err != nil || s.MaxConcurrency < 2 || s.MaxConcurrency > 1000 {
			errs = append(errs, fmt.Errorf("%s: %q is not a number from 2 to 1000", ctxMaxConcurrency, v))
		}
	}
	// The function validates the same settings at cold start; checking them here fails the
	// synth instead of the deployed function.
	if _, err := config.Load(func(k string) string {
		return map[string]string{
			config.EnvTable: "t", config.EnvSecurityAccount: "111111111111", config.EnvRegion: "us-east-1",
			config.EnvActivation: s.Activation, config.EnvTraining: s.Training, config.EnvDedup: s.Dedup,
			config.EnvSeverity: s.Severity, config.EnvTrustedCIDRs: s.TrustedCIDRs, config.EnvASNDB: s.ASNDB,
			config.EnvCrossRegion: s.CrossRegion, config.EnvPresigned: s.Presigned,
			config.EnvMemberAccounts: strings.Join(s.MemberAccounts, ","),
		}[k]
	}); err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// env is the detector function's environment: the names are pkg/config's.
func (s Settings) env(table, topic, account string) map[string]*string {
	m := map[string]string{
		config.EnvTable: table, config.EnvTopicARN: topic, config.EnvSecurityAccount: account,
		config.EnvActivation: s.Activation, config.EnvTraining: s.Training, config.EnvDedup: s.Dedup,
		config.EnvEmailSeverity: s.EmailSeverity,
	}
	for k, v := range map[string]string{config.EnvSeverity: s.Severity, config.EnvTrustedCIDRs: s.TrustedCIDRs, config.EnvASNDB: s.ASNDB, config.EnvCrossRegion: s.CrossRegion, config.EnvPresigned: s.Presigned,
		config.EnvMemberAccounts: strings.Join(s.MemberAccounts, ",")} {
		if v != "" {
			m[k] = v
		}
	}
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[k] = &v
	}
	return out
}
