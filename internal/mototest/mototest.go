// Package mototest gives integration tests a real AWS API on loopback: a moto server
// (python3 -m moto.server) that TestMain starts on a free port and stops afterwards, unless
// AWS_ENDPOINT_URL already names one. Where moto is not installed the tests skip, saying
// how to install it; with CI=true they fail instead, so CI never skips them silently.
package mototest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"

	"github.com/aws/aws-sdk-go-v2/aws"
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
	logf, _ := os.CreateTemp("", "moto-*.log")
	defer func() {
		logf.Close()
		os.Remove(logf.Name())
	}()
	// Another test binary may take the free port between our look and moto's bind: then our
	// moto exits, and we must not talk to theirs (it stops when they finish). Try again.
	var stop func()
	for attempt := 0; attempt < 5 && stop == nil; attempt++ {
		port, err := freePort()
		if err != nil {
			fmt.Fprintln(os.Stderr, "mototest:", err)
			return 1
		}
		stop = start(port, logf)
	}
	if stop == nil {
		b, _ := os.ReadFile(logf.Name())
		fmt.Fprintf(os.Stderr, "mototest: moto did not start:\n%s\n", b)
		return 1
	}
	defer stop()
	return m.Run()
}

// start runs moto on port and waits until it answers; it returns nil if moto exited or did
// not answer in 30 s.
func start(port int, logf *os.File) (stop func()) {
	cmd := exec.Command("python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "mototest: start moto:", err)
		return nil
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() { cmd.Process.Kill(); <-exited }
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return nil // the port was taken
		default:
		}
		if resp, err := http.Get(url + "/moto-api/"); err == nil {
			resp.Body.Close()
			select {
			case <-exited:
				return nil // it answered, but it was someone else's
			default:
				endpoint = url
				return stop
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return nil
}

// freePort picks a random free port. Random rather than the kernel's next one: test
// binaries of several packages start moto at the same moment, and the kernel hands them
// neighbouring ports.
func freePort() (int, error) {
	for i := 0; i < 50; i++ {
		port := 20000 + rand.IntN(40000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("no free port")
}

// Endpoint returns moto's URL, or skips the test where moto is missing.
func Endpoint(t testing.TB) string {
	t.Helper()
	if endpoint == "" {
		t.Skip("integration test: " + missing)
	}
	return endpoint
}

// Transport carries requests to moto without keeping connections alive: moto's server may
// close an idle connection just as the client reuses it, and the SDK then retries a request
// moto may have carried out (a CreateTable twice: "already exists").
func Transport() http.RoundTripper {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	return tr
}

// Config is an SDK configuration that talks to moto with test credentials. rt, when not
// nil, carries the requests (a counting or fault-injecting transport). Its retryer is the
// SDK's standard one (3 attempts, the same retry quota) without the waits between attempts:
// injected failures are retried as in production, in milliseconds instead of seconds.
func Config(t testing.TB, rt http.RoundTripper) aws.Config {
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(Endpoint(t)),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
			})
		},
	}
	if rt == nil {
		rt = Transport()
	}
	cfg.HTTPClient = &http.Client{Transport: rt}
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
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		// In use: our own request, retried by the SDK after moto had carried it out (the
		// name is this process's own).
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
