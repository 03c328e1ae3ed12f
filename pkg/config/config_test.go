package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoad(t *testing.T) {
	good := map[string]string{
		EnvTable: "outsider-state", EnvSecurityAccount: "111122223333", EnvRegion: "eu-west-1",
		EnvTopicARN: "arn:aws:sns:eu-west-1:111122223333:outsider-findings", EnvActivation: "7d", EnvTrustedCIDRs: "31.224.40.0/24",
		EnvSeverity: "cli=CRITICAL", EnvASNDB: "s3://bucket/asn/GeoLite2-ASN.mmdb", EnvPresigned: "true",
	}
	c, err := Load(env(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Detect.Activation != 7*24*time.Hour || c.Detect.Training != 30*24*time.Hour || len(c.Detect.Trusted) != 1 ||
		c.Detect.Severity["Remote command line usage of AWS Lambda's token"] != "CRITICAL" || c.ASNDB.Key != "asn/GeoLite2-ASN.mmdb" || !c.Detect.PresignedFindings {
		t.Errorf("loaded %+v", c)
	}
}

func TestLoadNamesEveryProblem(t *testing.T) {
	_, err := Load(env(map[string]string{
		EnvSecurityAccount: "12345", EnvTopicARN: "topic", EnvDedup: "a week", EnvTrustedCIDRs: "office", EnvIPRanges: "bucket/key", EnvPresigned: "yes",
	}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{EnvTable, EnvSecurityAccount, EnvTopicARN, EnvDedup, EnvTrustedCIDRs, EnvIPRanges, EnvRegion, EnvPresigned} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestLoadRefresher(t *testing.T) {
	env := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	r, err := LoadRefresher(env(map[string]string{EnvRangesBucket: "b", EnvSilenceHours: "6", EnvTable: "t"}))
	if err != nil || r.Silence != 6*time.Hour || r.Table != "t" {
		t.Errorf("LoadRefresher = %+v, %v", r, err)
	}
	for _, bad := range []map[string]string{
		{EnvRangesBucket: "b", EnvSilenceHours: "6"},                                            // where is the register?
		{EnvRangesBucket: "b", EnvSilenceHours: "-1", EnvTable: "t"},                            // not hours
		{EnvRangesBucket: "b", EnvSilenceHours: "six", EnvTable: "t"},                           // not a number
		{EnvRangesBucket: "b", EnvASNSources: "http://example.org/a.csv", EnvASNDB: "s3://b/k"}, // not https
	} {
		if _, err := LoadRefresher(env(bad)); err == nil {
			t.Errorf("LoadRefresher(%v) accepted", bad)
		}
	}
}
