// Package mototest gives integration tests a real AWS API on loopback: a moto server
// (python3 -m moto.server) that TestMain starts on a free port and stops afterwards, unless
// AWS_ENDPOINT_URL already names one. Where moto is not installed the tests skip, saying
// how to install it; with CI=true they fail instead, so CI never skips them silently.
package mototest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/outsider-sec/outsider/pkg/dynamo"
)

// Install is what to do where moto is missing.
const Install = "pip install 'moto[server]'"

var (
	endpoint string
	missing  string
)

// Main starts moto if needed, runs the tests and stops it. Use it as TestMain's body:
//
//	func TestMain(m *testing.M) { os.Exit(mototest.Main(m)) }
func Main(m *testing.M) int {
	if endpoint = os.Getenv("AWS_ENDPOINT_URL"); endpoint != "" {
		return m.Run()
	}
	if err := exec.Command("python3", "-c", "import moto.server").Run(); err != nil {
		missing = "moto is not installed (" + Install + ")"
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "mototest: "+missing+": CI does not skip integration tests")
			return 1
		}
		return m.Run()
	}
	port, err := freePort()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mototest:", err)
		return 1
	}
	cmd := exec.Command("python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	logf, _ := os.CreateTemp("", "moto-*.log")
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "mototest: start moto:", err)
		return 1
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		os.Remove(logf.Name())
	}()
	endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(endpoint + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			fmt.Fprintf(os.Stderr, "mototest: moto did not answer on %s in 30 s:\n%s\n", endpoint, b)
			return 1
		}
		time.Sleep(100 * time.Millisecond)
	}
	return m.Run()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Endpoint returns moto's URL, or skips the test where moto is missing.
func Endpoint(t testing.TB) string {
	t.Helper()
	if endpoint == "" {
		t.Skip("integration test: " + missing)
	}
	return endpoint
}

// Config is an SDK configuration that talks to moto with test credentials. rt, when not
// nil, carries the requests (a counting or fault-injecting transport).
func Config(t testing.TB, rt http.RoundTripper) aws.Config {
	cfg := aws.Config{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint:     aws.String(Endpoint(t)),
		RetryMaxAttempts: 3,
	}
	client := awshttp.NewBuildableClient()
	if rt != nil {
		cfg.HTTPClient = &http.Client{Transport: rt}
	} else {
		cfg.HTTPClient = client
	}
	return cfg
}

var tables atomic.Int64

// Table creates a fresh table shaped as the stack creates it (pk, TTL on exp) and returns
// its name.
func Table(t testing.TB, cfg aws.Config) string {
	t.Helper()
	name := fmt.Sprintf("outsider-test-%d-%d", os.Getpid(), tables.Add(1))
	db := dynamodb.NewFromConfig(cfg)
	ctx := context.Background()
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(dynamo.AttrKey), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(dynamo.AttrKey), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("create table: %v", err)
	}
	if _, err := db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(dynamo.AttrExpires), Enabled: aws.Bool(true)},
	}); err != nil {
		t.Fatalf("enable TTL: %v", err)
	}
	return name
}
