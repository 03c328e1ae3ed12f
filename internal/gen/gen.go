// Package gen writes realistic synthetic CloudTrail histories for benchmarks and
// reference-model tests, built from the shapes of the real public datasets: mostly
// AWS-internal traffic (services calling services, EC2 instance roles, CI on EC2), Lambda
// functions that get keys from Lambda and use them inside AWS, the company's people from
// their own networks, and a few thefts of a function's key used from outside.
package gen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"time"

	"github.com/outsider-sec/outsider/pkg/ipranges"
)

// Config shapes a history.
type Config struct {
	Seed      uint64
	Records   int
	Start     time.Time
	Days      int // the history spans this many days
	Accounts  int
	Functions int // per account
	Thefts    int // stolen function keys, used from outside after activation
	// FreshKeyThefts: each theft follows a cold start within minutes (Lambda issues the key,
	// the function uses it from inside, then the thief): the case where late learning
	// events matter most.
	FreshKeyThefts bool
}

// Default is a month of three accounts with 40 functions each and three thefts.
func Default(records int) Config {
	return Config{Seed: 42, Records: records, Start: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Days: 30, Accounts: 3, Functions: 40, Thefts: 3}
}

// Summary counts what was written.
type Summary struct {
	Records, LambdaIssued, LambdaInside, People, Internal, Thefts int
}

type function struct {
	account, name, role, region, ua string
	key                             string
	keyAt                           time.Time
}

// Addresses outside AWS, from networks of MaxMind's test ASN database.
var (
	peopleNets  = []string{"31.224.40.", "31.224.41.", "1.128.20.", "12.81.92."} // AS3320, AS1221, AS7018
	attackerNet = []string{"27.192.8.", "36.192.7.", "38.73.131."}               // AS4837, AS9394, AS174
)

var regions = []string{"eu-west-1", "us-east-1", "ap-southeast-2"}

var lambdaUAs = []string{
	"aws-sdk-java/2.28.1 Linux/5.10.227-239.884.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/21.0.4+7-LTS Java/21.0.4 vendor/Amazon.com_Inc. exec-env/AWS_Lambda_java21 io/sync http/UrlConnection cfg/retry-mode/legacy",
	"Boto3/1.34.145 md/Botocore#1.34.145 ua/2.0 os/linux#5.10.227-239.884.amzn2.x86_64 md/arch#x86_64 lang/python#3.12.7 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.34.145",
	"aws-sdk-go-v2/1.32.2 os/linux lang/go#1.23.2 md/GOOS#linux md/GOARCH#arm64 api/dynamodb#1.36.2",
	"aws-sdk-nodejs/3.637.0 linux/v20.17.0 exec-env/AWS_Lambda_nodejs20.x api/s3#3.637.0",
}

const (
	uaConsole = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36"
	uaCLI     = "aws-cli/2.22.0 md/awscrt#0.22.0 ua/2.0 os/macos#24.1.0 md/arch#arm64 lang/python#3.12.6 md/pyimpl#CPython cfg/retry-mode#standard md/installer#source md/prompt#off md/command#s3.ls"
	uaTF      = "APN/1.0 HashiCorp/1.0 Terraform/1.9.8 (+https://www.terraform.io) terraform-provider-aws/5.72.1 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.32.2 ua/2.0 os/linux lang/go#1.23.2"
	uaScript  = "python-requests/2.32.3"
)

var insideCalls = [][3]string{
	{"dynamodb.amazonaws.com", "PutItem", `{"tableName":"orders"}`},
	{"dynamodb.amazonaws.com", "GetItem", `{"tableName":"orders","key":{"pk":{"S":"o#1"}}}`},
	{"s3.amazonaws.com", "PutObject", `{"bucketName":"reports-bucket","key":"2026/03/report.pdf","Host":"reports-bucket.s3.amazonaws.com"}`},
	{"sqs.amazonaws.com", "SendMessage", `{"queueUrl":"https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"}`},
	{"secretsmanager.amazonaws.com", "GetSecretValue", `{"secretId":"prod/db"}`},
	{"kms.amazonaws.com", "Decrypt", `{"encryptionAlgorithm":"SYMMETRIC_DEFAULT"}`},
}

var internal = [][4]string{ // source, name, identity type, sourceIP
	{"kms.amazonaws.com", "Decrypt", "AWSService", "AWS Internal"},
	{"sts.amazonaws.com", "AssumeRole", "AWSService", "ec2.amazonaws.com"},
	{"ec2.amazonaws.com", "DescribeInstances", "AssumedRole", ""},
	{"ssm.amazonaws.com", "UpdateInstanceInformation", "AssumedRole", ""},
	{"logs.amazonaws.com", "CreateLogStream", "AWSService", "lambda.amazonaws.com"},
	{"s3.amazonaws.com", "GetBucketAcl", "AWSService", "config.amazonaws.com"},
	{"iam.amazonaws.com", "GetRole", "IAMUser", ""},
	{"cloudformation.amazonaws.com", "DescribeStacks", "IAMUser", ""},
}

type writer struct {
	w    *bufio.Writer
	rng  *rand.Rand
	buf  []byte
	aws  map[string][]netip.Prefix
	emit func(account string, line []byte) error // set: records go here, by recipient account, instead of w
	err  error                                   // emit's first error
}

// Write writes a history as NDJSON, one record a line, in time order.
func Write(cfg Config, out io.Writer) (Summary, error) {
	g := &writer{w: bufio.NewWriterSize(out, 1<<20), rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), aws: awsPrefixes()}
	var fns []*function
	accounts := make([]string, cfg.Accounts)
	for a := range accounts {
		accounts[a] = fmt.Sprintf("2109876543%02d", 10+a)
		for i := 0; i < cfg.Functions; i++ {
			name := fmt.Sprintf("svc-%02d-%s", i, []string{"orders", "invoices", "reports", "sync", "ingest"}[i%5])
			fns = append(fns, &function{account: accounts[a], name: name, role: name + "-role", region: regions[(a+i)%len(regions)], ua: lambdaUAs[i%len(lambdaUAs)]})
		}
	}
	// Thefts happen in the last third, after every account's activation period.
	type theft struct {
		at time.Time
		fn *function
		ua string
	}
	var thefts []theft
	span := time.Duration(cfg.Days) * 24 * time.Hour
	for i := 0; i < cfg.Thefts && len(fns) > 0; i++ {
		at := cfg.Start.Add(span*2/3 + time.Duration(g.rng.Int64N(int64(span/3))))
		thefts = append(thefts, theft{at, fns[g.rng.IntN(len(fns))], []string{uaCLI, uaScript}[i%2]})
	}
	var s Summary
	step := span / time.Duration(max(cfg.Records, 1))
	t := cfg.Start
	for s.Records < cfg.Records {
		t = t.Add(step)
		for len(thefts) > 0 && !t.Before(thefts[0].at) {
			th := thefts[0]
			thefts = thefts[1:]
			if th.fn.key == "" && !cfg.FreshKeyThefts {
				continue
			}
			if cfg.FreshKeyThefts {
				fn := th.fn
				fn.key, fn.keyAt = g.key(), t
				g.assumeRole(t, fn)
				s.LambdaIssued++
				t = t.Add(30 * time.Second)
				c := insideCalls[g.rng.IntN(len(insideCalls))]
				g.record(t, fn.account, fn.region, c[0], c[1], g.session(fn.account, fn.role, fn.name, fn.key), g.awsIP(fn.region), fn.ua, c[2], "", "")
				s.LambdaInside++
				t = t.Add(time.Duration(60+g.rng.IntN(240)) * time.Second)
				s.Records += 2
			}
			ip := attackerNet[s.Thefts%len(attackerNet)] + strconv.Itoa(10+g.rng.IntN(200))
			for _, c := range [][2]string{{"sts.amazonaws.com", "GetCallerIdentity"}, {"s3.amazonaws.com", "ListBuckets"}, {"iam.amazonaws.com", "ListRoles"}} {
				if s.Records >= cfg.Records {
					break
				}
				g.record(t, th.fn.account, th.fn.region, c[0], c[1], g.session(th.fn.account, th.fn.role, th.fn.name, th.fn.key), ip, th.ua, "{}", "", "")
				s.Records++
				t = t.Add(time.Second)
			}
			s.Thefts++
		}
		if s.Records >= cfg.Records {
			break
		}
		switch p := g.rng.IntN(100); {
		case p < 2: // Lambda issues a function a new key (a cold start)
			fn := fns[g.rng.IntN(len(fns))]
			fn.key, fn.keyAt = g.key(), t
			g.assumeRole(t, fn)
			s.LambdaIssued++
		case p < 32: // a function calls AWS from inside
			fn := fns[g.rng.IntN(len(fns))]
			if fn.key == "" {
				fn.key, fn.keyAt = g.key(), t
				g.assumeRole(t, fn)
				s.LambdaIssued++
				break
			}
			c := insideCalls[g.rng.IntN(len(insideCalls))]
			g.record(t, fn.account, fn.region, c[0], c[1], g.session(fn.account, fn.role, fn.name, fn.key), g.awsIP(fn.region), fn.ua, c[2], "", "")
			s.LambdaInside++
		case p < 37: // the company's people, from their own networks
			a := accounts[g.rng.IntN(len(accounts))]
			ip := peopleNets[g.rng.IntN(len(peopleNets))] + strconv.Itoa(2+g.rng.IntN(250))
			ua := uaConsole
			if g.rng.IntN(4) == 0 {
				ua = uaCLI
			}
			g.record(t, a, "eu-west-1", "ec2.amazonaws.com", "DescribeInstances", g.session(a, "AWSReservedSSO_PowerUser_0a1b2c3d", "dana@example.org", "ASIA"+g.keyBody()), ip, ua, `{"maxResults":1000}`, "", "")
			s.People++
		default: // AWS-internal traffic
			g.internalCall(t, accounts[g.rng.IntN(len(accounts))])
			s.Internal++
		}
		s.Records++
	}
	return s, g.w.Flush()
}

// internalCall writes a call made inside AWS in an account: an AWS service on its own or
// on the account's behalf, an EC2 instance role, CI with an IAM user's key.
func (g *writer) internalCall(t time.Time, account string) {
	region := regions[g.rng.IntN(len(regions))]
	c := internal[g.rng.IntN(len(internal))]
	var ident, ip, ua string
	switch c[2] {
	case "AWSService":
		ident = `{"type":"AWSService","invokedBy":"` + c[3] + `"}`
		ip, ua = c[3], c[3]
	case "AssumedRole":
		ident = g.session(account, "web-asg-role", "i-0"+strconv.FormatUint(g.rng.Uint64()>>8, 16), "ASIA"+g.keyBody())
		ip, ua = g.awsIP(region), "aws-sdk-go/1.55.5 (go1.22.7; linux; amd64)"
	default:
		ident = `{"type":"IAMUser","principalId":"AIDA` + g.keyBody() + `","arn":"arn:aws:iam::` + account + `:user/ci-deployer","accountId":"` + account + `","accessKeyId":"AKIA` + g.keyBody() + `","userName":"ci-deployer"}`
		ip, ua = g.awsIP(region), uaTF
	}
	g.record(t, account, region, c[0], c[1], ident, ip, ua, `{"roleName":"app"}`, "", "")
}

func (g *writer) assumeRole(t time.Time, fn *function) {
	resp := `{"credentials":{"accessKeyId":"` + fn.key + `","sessionToken":"IQoJb3JpZ2luX2VjEFAKE` + g.keyBody() + g.keyBody() + `","expiration":"` + t.Add(12*time.Hour).Format("Jan 2, 2006, 3:04:05 PM") + `"}}`
	req := `{"roleArn":"arn:aws:iam::` + fn.account + `:role/` + fn.role + `","roleSessionName":"awslambda_` + strconv.Itoa(g.rng.IntN(999)) + `_` + t.Format("20060102150405") + `123"}`
	g.record(t, fn.account, fn.region, "sts.amazonaws.com", "AssumeRole", `{"type":"AWSService","invokedBy":"lambda.amazonaws.com"}`, "lambda.amazonaws.com", "lambda.amazonaws.com", req, resp, "")
}

func (g *writer) session(account, role, name, key string) string {
	return `{"type":"AssumedRole","principalId":"AROA` + account + `X:` + name + `","arn":"arn:aws:sts::` + account + `:assumed-role/` + role + `/` + name +
		`","accountId":"` + account + `","accessKeyId":"` + key + `","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROA` + account +
		`X","arn":"arn:aws:iam::` + account + `:role/` + role + `","accountId":"` + account + `","userName":"` + role +
		`"},"attributes":{"creationDate":"2026-03-01T00:00:00Z","mfaAuthenticated":"false"}}}`
}

func (g *writer) record(t time.Time, account, region, source, name, ident, ip, ua, req, resp, errCode string) {
	b := g.buf[:0]
	b = append(b, `{"eventVersion":"1.11","userIdentity":`...)
	b = append(b, ident...)
	b = append(b, `,"eventTime":"`...)
	b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05Z")
	b = append(b, `","eventSource":"`...)
	b = append(b, source...)
	b = append(b, `","eventName":"`...)
	b = append(b, name...)
	b = append(b, `","awsRegion":"`...)
	b = append(b, region...)
	b = append(b, `","sourceIPAddress":"`...)
	b = append(b, ip...)
	b = append(b, `","userAgent":"`...)
	b = append(b, ua...)
	b = append(b, `","requestParameters":`...)
	b = append(b, req...)
	b = append(b, `,"responseElements":`...)
	if resp == "" {
		resp = "null"
	}
	b = append(b, resp...)
	if errCode != "" {
		b = append(b, `,"errorCode":"`...)
		b = append(b, errCode...)
		b = append(b, `"`...)
	}
	b = append(b, `,"requestID":"`...)
	b = g.uuid(b)
	b = append(b, `","eventID":"`...)
	b = g.uuid(b)
	b = append(b, `","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"`...)
	b = append(b, account...)
	b = append(b, `","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"`...)
	b = append(b, source...)
	b = append(b, `"}}`...)
	b = append(b, '\n')
	g.buf = b
	if g.emit == nil {
		g.w.Write(b)
	} else if g.err == nil {
		g.err = g.emit(account, b)
	}
}

func (g *writer) uuid(b []byte) []byte {
	const hex = "0123456789abcdef"
	x, y := g.rng.Uint64(), g.rng.Uint64()
	for i := 0; i < 32; i++ {
		if i == 8 || i == 12 || i == 16 || i == 20 {
			b = append(b, '-')
		}
		v := x
		if i >= 16 {
			v = y
		}
		b = append(b, hex[(v>>(4*(i%16)))&15])
	}
	return b
}

const base32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

func (g *writer) keyBody() string {
	var k [16]byte
	for i := range k {
		k[i] = base32[g.rng.IntN(32)]
	}
	return string(k[:])
}

func (g *writer) key() string { return "ASIA" + g.keyBody() }

// awsPrefixes are the EC2 IPv4 prefixes of each region, from the embedded ip-ranges.json.
func awsPrefixes() map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	r := ipranges.Embedded()
	for _, reg := range regions {
		for _, p := range r.Prefixes(reg, "EC2") {
			if p.Addr().Is4() && p.Bits() <= 24 {
				out[reg] = append(out[reg], p)
			}
		}
	}
	return out
}

func (g *writer) awsIP(region string) string {
	ps := g.aws[region]
	p := ps[g.rng.IntN(len(ps))]
	a := p.Addr().As4()
	host := g.rng.Uint32() & (1<<(32-p.Bits()) - 1)
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
}
