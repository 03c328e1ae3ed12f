package gen

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"
)

// The demo history: four weeks of one account, with three functions, its people, AWS's own
// traffic, and four thefts after the activation period (and one during it).
const (
	demoAccount = "123456789012"
	demoRegion  = "eu-west-1"
)

var demoStart = time.Date(2026, 5, 4, 0, 0, 0, 0, time.UTC)

type demo struct {
	rng  *rand.Rand
	recs []map[string]any
}

func (d *demo) at(day int, sec int) time.Time {
	return demoStart.Add(time.Duration(day)*24*time.Hour + time.Duration(sec)*time.Second)
}

func (d *demo) key() string {
	var b strings.Builder
	b.WriteString("ASIA")
	for i := 0; i < 16; i++ {
		b.WriteByte(base32[d.rng.IntN(32)])
	}
	return b.String()
}

func (d *demo) uuid() string {
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", d.rng.Uint32(), d.rng.Uint32()&0xffff, d.rng.Uint32()&0xffff, d.rng.Uint32()&0xffff, d.rng.Uint64()&0xffffffffffff)
}

func (d *demo) session(role, name, key string) map[string]any {
	return map[string]any{
		"type": "AssumedRole", "principalId": "AROAEXAMPLE" + strings.ToUpper(role[:3]) + ":" + name,
		"arn": "arn:aws:sts::" + demoAccount + ":assumed-role/" + role + "/" + name, "accountId": demoAccount, "accessKeyId": key,
		"sessionContext": map[string]any{
			"sessionIssuer": map[string]any{"type": "Role", "principalId": "AROAEXAMPLE" + strings.ToUpper(role[:3]),
				"arn": "arn:aws:iam::" + demoAccount + ":role/" + role, "accountId": demoAccount, "userName": role},
			"attributes": map[string]any{"creationDate": "2026-05-04T00:00:00Z", "mfaAuthenticated": "false"},
		},
	}
}

func (d *demo) add(t time.Time, ident map[string]any, source, name, ip, ua string, req, resp map[string]any, errCode string) {
	r := map[string]any{
		"eventVersion": "1.11", "userIdentity": ident, "eventTime": t.Format("2006-01-02T15:04:05Z"), "eventSource": source,
		"eventName": name, "awsRegion": demoRegion, "sourceIPAddress": ip, "userAgent": ua, "requestParameters": req,
		"responseElements": resp, "requestID": d.uuid(), "eventID": d.uuid(), "readOnly": strings.HasPrefix(name, "Get") || strings.HasPrefix(name, "List") || strings.HasPrefix(name, "Describe"),
		"eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": demoAccount, "eventCategory": "Management",
	}
	if errCode != "" {
		r["errorCode"], r["errorMessage"] = errCode, "User is not authorized to perform this operation"
	}
	d.recs = append(d.recs, r)
}

// lambdaKey has Lambda issue a function's role a key, and returns it.
func (d *demo) lambdaKey(t time.Time, role string) string {
	k := d.key()
	d.add(t, map[string]any{"type": "AWSService", "invokedBy": "lambda.amazonaws.com"}, "sts.amazonaws.com", "AssumeRole",
		"lambda.amazonaws.com", "lambda.amazonaws.com",
		map[string]any{"roleArn": "arn:aws:iam::" + demoAccount + ":role/" + role, "roleSessionName": fmt.Sprintf("awslambda_%d_%s123", d.rng.IntN(999), t.Format("20060102150405"))},
		map[string]any{"credentials": map[string]any{"accessKeyId": k, "sessionToken": "IQoJb3JpZ2luX2VjEDEMOdemoDEMOnotAREALtoken" + k, "expiration": t.Add(12 * time.Hour).Format("Jan 2, 2006, 3:04:05 PM")}}, "")
	return k
}

var demoAWS = []string{"52.16.10.20", "52.16.44.5", "34.240.7.9", "54.72.3.3"} // EC2 eu-west-1

// Demo writes the demo history as NDJSON of EventBridge events, in time order.
func Demo(w io.Writer) error {
	d := &demo{rng: rand.New(rand.NewPCG(7, 7))}
	type fn struct{ name, role, ua string }
	fns := []fn{
		{"thumbnailer", "thumbnailer-role", "Boto3/1.34.145 md/Botocore#1.34.145 ua/2.0 os/linux#5.10.227 md/arch#x86_64 lang/python#3.12.7 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.34.145"},
		{"billing-export", "billing-export-role", "aws-sdk-go-v2/1.32.2 os/linux lang/go#1.23.2 md/GOOS#linux md/GOARCH#arm64 api/s3#1.66.0"},
		{"webhook-relay", "webhook-relay-role", "aws-sdk-nodejs/3.637.0 linux/v20.17.0 exec-env/AWS_Lambda_nodejs20.x api/sqs#3.637.0"},
	}
	// billing-export's runtime does not say it is Lambda: the detector learns it from its
	// CreateFunction call.
	d.add(d.at(0, 30), d.session("github-deployer", "deploy-1187", d.key()), "lambda.amazonaws.com", "CreateFunction20150331", "34.240.7.9",
		"APN/1.0 HashiCorp/1.0 Terraform/1.9.8 aws-sdk-go-v2/1.32.2",
		map[string]any{"functionName": "billing-export", "role": "arn:aws:iam::" + demoAccount + ":role/billing-export-role", "runtime": "provided.al2023", "handler": "bootstrap"}, nil, "")
	keys := map[string]string{}
	for day := 0; day < 28; day++ {
		for i, f := range fns {
			t := d.at(day, 600+i*300)
			k := d.lambdaKey(t, f.role)
			keys[f.name] = k
			for c := 0; c < 3; c++ {
				d.add(t.Add(time.Duration(10+c*20)*time.Minute), d.session(f.role, f.name, k), "s3.amazonaws.com", "PutObject",
					demoAWS[d.rng.IntN(len(demoAWS))], f.ua, map[string]any{"bucketName": f.name + "-data", "key": "out/" + d.uuid()}, nil, "")
			}
			// KMS decrypting the function's environment: AWS on the function's behalf.
			d.add(t.Add(time.Minute), d.session(f.role, f.name, k), "kms.amazonaws.com", "Decrypt", "AWS Internal", "AWS Internal", nil, nil, "")
		}
		// The company's people, from the office.
		sso := d.session("AWSReservedSSO_PowerUser_0a1b2c3d", "dana@example.org", d.key())
		d.add(d.at(day, 9*3600), sso, "ec2.amazonaws.com", "DescribeInstances", "31.224.40.4", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.4 Safari/605.1.15", nil, nil, "")
		// An EC2 instance role, from inside AWS, and a service calling on an account's behalf.
		d.add(d.at(day, 10*3600), d.session("web-asg-role", "i-0a1b2c3d4e5f60718", d.key()), "ssm.amazonaws.com", "UpdateInstanceInformation", "54.72.3.3", "aws-sdk-go/1.55.5 (go1.22.7; linux; amd64)", nil, nil, "")
		d.add(d.at(day, 11*3600), map[string]any{"type": "AWSService", "invokedBy": "config.amazonaws.com"}, "s3.amazonaws.com", "GetBucketAcl", "config.amazonaws.com", "config.amazonaws.com", map[string]any{"bucketName": "thumbnailer-data"}, nil, "")

		stolen := func(f fn, ip, ua string, calls [][2]string, errCode string, session string) {
			if session == "" {
				session = f.name
			}
			for i, c := range calls {
				d.add(d.at(day, 14*3600+i*40), d.session(f.role, session, keys[f.name]), c[0], c[1], ip, ua, nil, nil, errCode)
			}
		}
		recon := [][2]string{{"sts.amazonaws.com", "GetCallerIdentity"}, {"s3.amazonaws.com", "ListBuckets"}, {"iam.amazonaws.com", "ListRoles"}}
		switch day {
		case 9: // during the activation period: learned from, but no finding
			stolen(fns[0], "27.192.8.8", "aws-cli/2.22.0 md/awscrt#0.22.0 ua/2.0 os/linux#6.8.0 md/arch#x86_64 lang/python#3.12.6 md/command#sts.get-caller-identity", recon[:1], "", "")
		case 16: // thumbnailer's key, with the AWS CLI, from outside
			stolen(fns[0], "27.192.8.8", "aws-cli/2.22.0 md/awscrt#0.22.0 ua/2.0 os/linux#6.8.0 md/arch#x86_64 lang/python#3.12.6 md/command#sts.get-caller-identity", recon, "", "")
		case 18: // billing-export's live key, from a script, while the function still uses it
			stolen(fns[1], "36.192.7.9", "python-requests/2.32.3", [][2]string{{"s3.amazonaws.com", "ListBuckets"}, {"s3.amazonaws.com", "GetObject"}}, "", "")
		case 20: // a session of webhook-relay's role that Lambda never issued: a contractor
			// assumed the role from home and used it
			keys["debug"] = d.key()
			contractor := map[string]any{"type": "IAMUser", "principalId": "AIDAEXAMPLECONTRACT1", "arn": "arn:aws:iam::" + demoAccount + ":user/contractor",
				"accountId": demoAccount, "accessKeyId": "AKIAEXAMPLECONTRACT1", "userName": "contractor"}
			d.add(d.at(day, 15*3600-60), contractor, "sts.amazonaws.com", "AssumeRole", "1.128.9.9", "Boto3/1.34.145 md/Botocore#1.34.145 ua/2.0 os/macos#24.1.0 lang/python#3.12.6",
				map[string]any{"roleArn": "arn:aws:iam::" + demoAccount + ":role/" + fns[2].role, "roleSessionName": "debug-session"},
				map[string]any{"credentials": map[string]any{"accessKeyId": keys["debug"], "sessionToken": "IQoJb3JpZ2luX2VjEDEMOdemoDEMOnotAREALtoken" + keys["debug"], "expiration": d.at(day, 18*3600).Format("Jan 2, 2006, 3:04:05 PM")}}, "")
			for i, c := range recon {
				d.add(d.at(day, 15*3600+i*40), d.session(fns[2].role, "debug-session", keys["debug"]), c[0], c[1], "1.128.9.9", "Boto3/1.34.145 md/Botocore#1.34.145 ua/2.0 os/macos#24.1.0 lang/python#3.12.6", nil, nil, "")
			}
		case 19: // thumbnailer again, the same ISO week: the same finding, updated
			stolen(fns[0], "27.192.8.8", "aws-cli/2.22.0 md/awscrt#0.22.0 ua/2.0 os/linux#6.8.0 md/arch#x86_64 lang/python#3.12.6 md/command#s3.ls", recon[1:2], "", "")
		case 23: // webhook-relay's key from a home network of the company's own ASN, all denied
			keys["webhook-relay-spare"] = d.lambdaKey(d.at(day, 13*3600), fns[2].role)
			for i, c := range recon {
				d.add(d.at(day, 14*3600+i*40), d.session(fns[2].role, fns[2].name, keys["webhook-relay-spare"]), c[0], c[1], "31.224.41.7", "Boto3/1.34.145 md/Botocore#1.34.145 ua/2.0 os/linux lang/python#3.12.6", nil, nil, "AccessDenied")
			}
		}
	}
	sortByTime(d.recs)
	for _, r := range d.recs {
		rec, err := json.Marshal(r)
		if err != nil {
			return err
		}
		env, err := Envelope(rec)
		if err != nil {
			return err
		}
		if _, err := w.Write(append(env, '\n')); err != nil {
			return err
		}
	}
	return nil
}

func sortByTime(recs []map[string]any) {
	// Stable: records of the same second keep their order.
	for i := 1; i < len(recs); i++ {
		for j := i; j > 0 && recs[j]["eventTime"].(string) < recs[j-1]["eventTime"].(string); j-- {
			recs[j], recs[j-1] = recs[j-1], recs[j]
		}
	}
}

// Envelope wraps a CloudTrail record the way EventBridge delivers it.
// https://docs.aws.amazon.com/eventbridge/latest/ref/events-structure.html
func Envelope(rec []byte) ([]byte, error) {
	var r struct {
		EventID            string `json:"eventID"`
		EventTime          string `json:"eventTime"`
		EventSource        string `json:"eventSource"`
		AWSRegion          string `json:"awsRegion"`
		RecipientAccountID string `json:"recipientAccountId"`
	}
	if err := json.Unmarshal(rec, &r); err != nil {
		return nil, err
	}
	type envelope struct {
		Version    string          `json:"version"`
		ID         string          `json:"id"`
		DetailType string          `json:"detail-type"`
		Source     string          `json:"source"`
		Account    string          `json:"account"`
		Time       string          `json:"time"`
		Region     string          `json:"region"`
		Resources  []string        `json:"resources"`
		Detail     json.RawMessage `json:"detail"`
	}
	return json.Marshal(envelope{
		Version: "0", ID: r.EventID, DetailType: "AWS API Call via CloudTrail",
		Source: "aws." + strings.TrimSuffix(r.EventSource, ".amazonaws.com"), Account: r.RecipientAccountID,
		Time: r.EventTime, Region: r.AWSRegion, Resources: []string{}, Detail: rec,
	})
}
