// Package faults injects AWS failures at the HTTP layer, for tests: throttling, 5xx and
// timeouts, before a request reaches the service or after the service carried it out (the
// case that tests idempotency: the work is done, the answer is lost).
package faults

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Kind is a failure.
type Kind int

const (
	Throttle     Kind = iota // 400 ThrottlingException, before the service sees the request
	ServerError              // 500, before the service sees it
	Timeout                  // a network timeout, before the service sees it
	LostResponse             // the service carries the request out; the answer is a 500
)

// String names the failure, as test cases say it.
func (k Kind) String() string {
	switch k {
	case Throttle:
		return "throttled"
	case ServerError:
		return "server-error"
	case Timeout:
		return "timeout"
	case LostResponse:
		return "done-answer-lost"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Transport wraps next and fails the requests a plan chooses.
type Transport struct {
	Next http.RoundTripper

	// Latency delays every request to a service by its duration before sending it: a
	// local server answers in microseconds where DynamoDB takes milliseconds.
	Latency map[string]time.Duration

	mu    sync.Mutex
	plans []*plan
	Count map[string]int // requests seen per service
}

type plan struct {
	service string // "dynamodb", "securityhub", "sns"
	every   int    // fail every n-th request of the service...
	burst   int    // ...and the (burst-1) after it (enough to exhaust the SDK's retries)
	kind    Kind
	left    int // failures still to inject; <0: unbounded
	inBurst int
}

// Fail plans failures: every n-th request to service starts a burst of failures of kind,
// `total` failures in all.
func (t *Transport) Fail(service string, every, burst int, kind Kind, total int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.plans = append(t.plans, &plan{service: service, every: every, burst: burst, kind: kind, left: total})
}

// Stop removes every plan.
func (t *Transport) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.plans = nil
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "injected: i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// service reads the signing service from the SigV4 Authorization header
// ("Credential=AKID/DATE/REGION/SERVICE/aws4_request").
func service(r *http.Request) string {
	a := r.Header.Get("Authorization")
	i := strings.Index(a, "Credential=")
	if i < 0 {
		return ""
	}
	parts := strings.Split(strings.SplitN(a[i+len("Credential="):], ",", 2)[0], "/")
	if len(parts) < 4 {
		return ""
	}
	return parts[3]
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	svc := service(r)
	t.mu.Lock()
	if t.Count == nil {
		t.Count = map[string]int{}
	}
	t.Count[svc]++
	n := t.Count[svc]
	var fail *plan
	for _, p := range t.plans {
		if p.service != svc || p.left == 0 {
			continue
		}
		if p.inBurst > 0 || n%p.every == 0 {
			if p.inBurst == 0 {
				p.inBurst = p.burst
			}
			p.inBurst--
			p.left--
			fail = p
			break
		}
	}
	var kind Kind
	if fail != nil {
		kind = fail.kind
	}
	delay := t.Latency[svc]
	t.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if fail == nil {
		return t.Next.RoundTrip(r)
	}
	switch kind {
	case Timeout:
		return nil, timeoutError{}
	case LostResponse:
		resp, err := t.Next.RoundTrip(r)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return synthetic(r, 500, "InternalFailure", "injected: response lost"), nil
	case Throttle:
		return synthetic(r, 400, "ThrottlingException", "injected: rate exceeded"), nil
	}
	return synthetic(r, 500, "InternalFailure", "injected: server error"), nil
}

// synthetic builds an AWS-shaped error response for the request's protocol.
func synthetic(r *http.Request, status int, code, msg string) *http.Response {
	var body, ctype string
	if r.Header.Get("X-Amz-Target") != "" || strings.Contains(r.Header.Get("Content-Type"), "json") {
		ctype = "application/x-amz-json-1.0"
		body = `{"__type":"` + code + `","message":"` + msg + `"}`
	} else {
		ctype = "text/xml"
		body = `<ErrorResponse><Error><Type>Sender</Type><Code>` + code + `</Code><Message>` + msg + `</Message></Error><RequestId>injected</RequestId></ErrorResponse>`
	}
	h := http.Header{}
	h.Set("Content-Type", ctype)
	h.Set("X-Amzn-Errortype", code)
	h.Set("X-Amzn-Requestid", "injected")
	return &http.Response{
		Status: http.StatusText(status), StatusCode: status, Header: h, Request: r,
		Body: io.NopCloser(bytes.NewReader([]byte(body))), ContentLength: int64(len(body)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}
}
