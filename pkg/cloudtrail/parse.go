package cloudtrail

import (
	"bufio"
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	json "github.com/goccy/go-json"
	"github.com/klauspost/compress/gzip"
)

// Reasons a value is skipped. They are stable words: the replay summary and the Lambda's
// metrics count skipped records by reason.
const (
	ReasonNotJSON      = "not-json"       // the bytes are not JSON at all
	ReasonNotRecord    = "not-a-record"   // JSON, but not a CloudTrail record (no eventName/eventSource)
	ReasonNoEventTime  = "no-event-time"  // neither eventTime nor @timestamp
	ReasonBadEventTime = "bad-event-time" // an eventTime in no known layout
	ReasonBadShape     = "bad-shape"      // a field of the wrong JSON type (userIdentity not an object, …)
	ReasonNotAPICall   = "not-api-call"   // an EventBridge event of another detail-type: irrelevant
	ReasonForged       = "forged"         // an envelope not put by AWS: source not aws.*, or account not the record's
	ReasonOutOfRange   = "time-out-of-range"
	ReasonTooLong      = "too-long" // a line or document past the reader's bound
)

// The dates a record may carry: CloudTrail did not exist before 2005 (it launched in 2013),
// and a record more than a day after the wall clock is forged or broken. Every date that
// passes is safe everywhere: Unix nanoseconds, event-time days, expiries.
var (
	earliestTime = time.Date(2005, 1, 1, 0, 0, 0, 0, time.UTC)
	futureSlack  = 24 * time.Hour
)

// Now is the wall clock the parser compares eventTime with. Tests may replace it.
var Now = time.Now

// MalformedError says why a value was skipped. Parsing goes on with the next value.
type MalformedError struct {
	Reason string // one of the Reason constants
	Detail string // what was wrong, without the record's content
}

func (e *MalformedError) Error() string {
	if e.Detail == "" {
		return "cloudtrail: " + e.Reason
	}
	return "cloudtrail: " + e.Reason + ": " + e.Detail
}

func malformed(reason, format string, args ...any) error {
	return &MalformedError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Reason returns the Reason of a MalformedError, or "error" for any other error.
func Reason(err error) string {
	var m *MalformedError
	if errors.As(err, &m) {
		return m.Reason
	}
	return "error"
}

// The EventBridge detail-type of CloudTrail API calls.
// https://docs.aws.amazon.com/eventbridge/latest/ref/events-structure.html
const detailTypeAPICall = "AWS API Call via CloudTrail"

// wire is every shape a top-level JSON object can have: a record, an EventBridge envelope
// or a log file. One decode tells which. It comes in two instances: with plain string
// fields (fast, and right for every well-formed record), and with flexString fields and
// optional objects that tolerate odd types, tried when the first fails.
type wire[S ~string, Q requestOf[S], P responseOf[S], R, D any] struct {
	wireRecord[S, Q, P]
	DetailType string `json:"detail-type"`
	// An envelope's record: decoded in the same pass (fast), or kept raw (tolerant).
	Detail D `json:"detail"`
	// A log file's records: decoded in the same pass (fast), or kept raw and parsed one by
	// one (tolerant: one odd record costs only itself).
	Records []R `json:"Records"`
	// The envelope's source and account: AWS puts "aws.<service>" and the account whose
	// trail logged the call. Anyone in the organisation may put other sources on the bus.
	// https://docs.aws.amazon.com/eventbridge/latest/ref/events-structure.html
	EnvSource  S `json:"source"`
	EnvAccount S `json:"account"`
}

type (
	fastRecord   = wireRecord[string, wireRequest[string], plainResponse[string]]
	fastWire     = wire[string, wireRequest[string], plainResponse[string], fastRecord, *fastRecord]
	tolerantWire = wire[flexString, optional[wireRequest[flexString]], optional[wireResponse[flexString]], json.RawMessage, json.RawMessage]
)

// requestOf and responseOf read requestParameters and responseElements whichever way they
// were decoded: a plain object (empty when absent or null) or an optional (empty when not
// an object).
type requestOf[S ~string] interface{ get() wireRequest[S] }
type responseOf[S ~string] interface{ get() wireResponse[S] }

func (w wireRequest[S]) get() wireRequest[S]   { return w }
func (w wireResponse[S]) get() wireResponse[S] { return w }
func (o optional[T]) get() T                   { return o.V }

type wireRecord[S ~string, Q requestOf[S], P responseOf[S]] struct {
	EventID            S `json:"eventID"`
	EventTime          S `json:"eventTime"`
	Timestamp          S `json:"@timestamp"`
	EventSource        S `json:"eventSource"`
	EventName          S `json:"eventName"`
	AWSRegion          S `json:"awsRegion"`
	SourceIPAddress    S `json:"sourceIPAddress"`
	UserAgent          S `json:"userAgent"`
	ErrorCode          S `json:"errorCode"`
	VPCEndpointID      S `json:"vpcEndpointId"`
	VPCEndpointAccount S `json:"vpcEndpointAccountId"`
	RecipientAccountID S `json:"recipientAccountId"`
	// Nested objects are values, not pointers: an absent or null object decodes to an empty
	// one, which gives the same record, without an allocation each.
	UserIdentity      wireIdent[S] `json:"userIdentity"`
	RequestParameters Q            `json:"requestParameters"`
	ResponseElements  P            `json:"responseElements"`
	AdditionalData    struct {
		AuthenticationMethod S `json:"AuthenticationMethod"`
	} `json:"additionalEventData"`
}

type wireIdent[S ~string] struct {
	Type           S `json:"type"`
	PrincipalID    S `json:"principalId"`
	ARN            S `json:"arn"`
	AccountID      S `json:"accountId"`
	AccessKeyID    S `json:"accessKeyId"`
	InvokedBy      S `json:"invokedBy"`
	SessionContext struct {
		SessionIssuer struct {
			ARN       S `json:"arn"`
			AccountID S `json:"accountId"`
			UserName  S `json:"userName"`
		} `json:"sessionIssuer"`
	} `json:"sessionContext"`
}

type wireRequest[S ~string] struct {
	RoleARN         S `json:"roleArn"`
	RoleSessionName S `json:"roleSessionName"`
	FunctionName    S `json:"functionName"`
	Role            S `json:"role"`
	RoleName        S `json:"roleName"`
	AssumeRolePol   S `json:"assumeRolePolicyDocument"`
	PolicyDocument  S `json:"policyDocument"`
}

// wireResponse names only the non-secret fields of responseElements. The sessionToken and
// secretAccessKey of responseElements.credentials have no field here: the decoder skips
// them and they never reach a Record, a log line or the store.
type wireResponse[S ~string] struct {
	Credentials optional[struct {
		AccessKeyID S `json:"accessKeyId"`
		Expiration  S `json:"expiration"`
	}] `json:"credentials"`
	// ConsoleLogin's result: "Success" or "Failure".
	ConsoleLogin S `json:"ConsoleLogin"`
	// An object in IAM's CreateRole; a plain ARN in Lambda's CreateFunction.
	Role optional[struct {
		ARN S `json:"arn"`
	}] `json:"role"`
}

// plainResponse is wireResponse for the fast instance: its objects decoded in place. An
// optional's UnmarshalJSON has the decoder copy the object's bytes and decode them again
// (five allocations an AssumeRole: 13% of a dense history's allocations). Anything but an
// object or null where one belongs (Lambda's CreateFunction puts the role's ARN there)
// fails the fast decode, and the tolerant one reads it.
type plainResponse[S ~string] struct {
	Credentials struct {
		AccessKeyID S `json:"accessKeyId"`
		Expiration  S `json:"expiration"`
	} `json:"credentials"`
	ConsoleLogin S `json:"ConsoleLogin"`
	Role         struct {
		ARN S `json:"arn"`
	} `json:"role"`
}

func (p plainResponse[S]) get() wireResponse[S] {
	var w wireResponse[S]
	w.Credentials.V.AccessKeyID, w.Credentials.V.Expiration = p.Credentials.AccessKeyID, p.Credentials.Expiration
	w.ConsoleLogin, w.Role.V.ARN = p.ConsoleLogin, p.Role.ARN
	return w
}

// flexString takes a JSON string and ignores any other type: CloudTrail writers disagree on
// types (numbers, nulls, objects where a string is usual), and one odd field must not cost
// the whole record.
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	if len(b) >= 2 && b[0] == '"' {
		if raw := b[1 : len(b)-1]; bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
			*s = flexString(raw) // no escapes: the bytes are the string
			return nil
		}
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
	}
	return nil
}

// optional decodes an object into T and ignores any other JSON type (null, a string, …).
type optional[T any] struct{ V T }

func (o *optional[T]) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] != '{' {
		return nil
	}
	return json.Unmarshal(b, &o.V)
}

// ParseValue decodes one JSON value — a record, an EventBridge envelope, a CloudTrail log
// file or an array of any of these — and calls emit for each record in it and bad for each
// part that is skipped. It never panics on any input. Records own their strings: b may be
// reused once ParseValue returns.
func ParseValue(b []byte, emit func(*Record), bad func(error)) {
	parseValue(b, 0, &out{emit: emit, bad: bad, latest: Now().Add(futureSlack)})
}

// ParseEnvelope decodes one EventBridge event as a rule's target receives it: an "AWS API
// Call via CloudTrail" envelope from AWS whose detail is one record. Any other value — a
// bare record, an array, a log file, an envelope around anything but one record — was not
// put there by EventBridge and is forged: the Lambda's queue may be written by principals
// other than the rules, and what they write must never teach or raise anything.
// https://docs.aws.amazon.com/eventbridge/latest/ref/events-structure.html
func ParseEnvelope(b []byte, emit func(*Record), bad func(error)) {
	parseValue(b, 0, &out{emit: emit, bad: bad, latest: Now().Add(futureSlack), only: onlyEnvelope})
}

// wireSpace is a decoding space, reused: the wire, and a log file's records.
type wireSpace struct {
	w    fastWire
	recs []fastRecord
}

var wires = sync.Pool{New: func() any { return new(wireSpace) }}

// logFileStart is how CloudTrail's log files begin.
var logFileStart = []byte(`{"Records":`)

// out is where parsing puts what it finds.
type out struct {
	emit   func(*Record)
	bad    func(error)
	latest time.Time // a record after this is out of range (read once, not per record)
	arena  *arena    // where records come from; nil: one allocation each
	only   shape     // the one shape accepted here; anything else is forged
}

// inOrder emits a document's records (a log file's, an array's) in eventTime order, ties
// in the document's, when one is more than documentDisorder behind a record before it: a
// document is parsed whole, so putting it in order costs no memory, where a document out
// of order by more than the replay's reorder window (an export newest first) would have
// its records decided late. Less disorder (a CloudTrail log file's few minutes) is left to
// the reorder window, and costs one pass over the times.
func (o *out) inOrder(recs []*Record) {
	var newest int64
	for i, r := range recs {
		t := r.Time.Unix()
		if i > 0 && t < newest-documentDisorder {
			slices.SortStableFunc(recs, byTime)
			break
		}
		newest = max(newest, t)
	}
	for _, r := range recs {
		o.emit(r)
	}
}

// documentDisorder is how far, in seconds, a document's record may be behind one before it
// without the document being sorted: half the replay's default reorder window.
const documentDisorder = 15 * 60

func byTime(a, b *Record) int { return a.Time.Compare(b.Time) }

// collected runs parse with an out that holds what it emits, then emits it in order.
func (o *out) collected(parse func(c *out)) {
	var h []*Record
	c := *o
	c.emit = func(r *Record) { h = append(h, r) }
	parse(&c)
	o.inOrder(h)
}

// heldRecs holds the record lists of log files put in order (out.inOrder).
var heldRecs = sync.Pool{New: func() any { return new([]*Record) }}

// shape restricts what a value may be.
type shape uint8

const (
	anyShape     shape = iota
	onlyEnvelope       // an EventBridge envelope (the Lambda's messages)
	onlyRecord         // one record (an envelope's detail, in the Lambda)
)

// arena hands out records and their strings from larger allocations: a reader of many
// records makes one allocation for dozens of them instead of two for each. A block stays
// alive while any record or string cut from it does; records live for a batch, and the
// detector copies what it remembers. Not safe for concurrent use: one per goroutine.
type arena struct {
	recs []Record
	size int // records in the next block
	strs strings.Builder
	// maxBlock and chunk bound the record blocks and string chunks (0: 128 records,
	// 16 KiB).
	maxBlock, chunk int
	// common holds, by hash, a copy of each value last seen of the fields with few
	// values: a user agent, a service, an API, a region. A record's value that is there is
	// that copy instead of one of its own: on a dense history these were nearly half of
	// the bytes records kept (user agents alone a third), copied record after record. Its
	// copies are allocations of their own, not cut from a chunk, which a slot would
	// otherwise keep alive. commonSlots is its size, a power of two (0: 1024).
	common      []string
	commonSlots int
}

// maxCommon bounds the values arena.common keeps: real ones are a few dozen bytes (user
// agents up to a few hundred), and a forged file of long distinct ones must not fill it.
const maxCommon = 512

// commonSeed hashes the values of arena.common.
var commonSeed = maphash.MakeSeed()

// share points each field at the arena's copy of its value, made now if it had none.
func (a *arena) share(fields []*string) {
	if a.common == nil {
		n := a.commonSlots
		if n == 0 {
			n = 1024
		}
		a.common = make([]string, n)
	}
	mask := uint64(len(a.common) - 1)
	for _, f := range fields {
		v := *f
		if v == "" {
			continue
		}
		if len(v) > maxCommon {
			*f = strings.Clone(v) // not kept: the slots hold at most 1024 × maxCommon bytes
			continue
		}
		slot := &a.common[maphash.String(commonSeed, v)&mask]
		if *slot != v {
			*slot = strings.Clone(v)
		}
		*f = *slot
	}
}

// record returns a zeroed record: a recycled one when there is one.
func (a *arena) record() *Record {
	if a == nil {
		return new(Record)
	}
	if r, ok := recycled.Get().(*Record); ok {
		return r // zeroed by Recycle
	}
	if recycling.Load() {
		// Records come back: each its own allocation, since a recycled record from a
		// block would keep the whole block alive as long as it is in use.
		return new(Record)
	}
	if len(a.recs) == 0 {
		most := a.maxBlock
		if most == 0 {
			most = 128
		}
		a.size = min(max(2*a.size, 8), most)
		a.recs = make([]Record, a.size)
	}
	r := &a.recs[0]
	a.recs = a.recs[1:]
	return r
}

// recycled holds records given back by Recycle, for the arenas to hand out again;
// recycling is set once any were.
var (
	recycled  sync.Pool
	recycling atomic.Bool
)

// Recycle gives records back once nothing refers to them any more, nor will: the reader
// that reads the next ones fills them again instead of allocating. A replay decides
// hundreds of thousands of records, each 512 bytes with pointers for the collector to
// mark; reusing them makes most of its garbage none. Their strings are not theirs (they
// live in the arena's chunks) and stay valid.
func Recycle(rs []*Record) {
	if len(rs) > 0 && !recycling.Load() {
		recycling.Store(true)
	}
	for _, r := range rs {
		if r != nil {
			// Zeroed now, not when taken again: a record waiting in the pool would keep
			// the string chunks it points into alive, and with them the strings of every
			// record cut from them.
			*r = Record{}
			recycled.Put(r)
		}
	}
}

// strings returns a builder with room for n more bytes, whose String's earlier bytes stay
// as they are: substrings of it may be handed out.
func (a *arena) strings(n int) *strings.Builder {
	if a == nil {
		b := new(strings.Builder)
		b.Grow(n)
		return b
	}
	if a.strs.Cap()-a.strs.Len() < n {
		chunk := a.chunk
		if chunk == 0 {
			chunk = 16 << 10
		}
		a.strs = strings.Builder{}
		a.strs.Grow(max(n, chunk))
	}
	return &a.strs
}

// maxDepth bounds how deep containers nest: an array of envelopes whose detail is a record
// is 3. Deeper nesting is no CloudTrail shape, and each level would re-read the bytes below.
const maxDepth = 3

func parseValue(b []byte, depth int, o *out) {
	if depth > maxDepth {
		o.bad(malformed(ReasonBadShape, "containers nested deeper than %d", maxDepth))
		return
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return
	}
	switch b[0] {
	case '[':
		if o.only != anyShape {
			o.bad(malformed(ReasonForged, "an array, not one EventBridge event"))
			return
		}
		var items []json.RawMessage
		if err := json.Unmarshal(b, &items); err != nil {
			o.bad(malformed(ReasonNotJSON, "%s", shortErr(err)))
			return
		}
		o.collected(func(c *out) {
			for _, it := range items {
				parseValue(it, depth+1, c)
			}
		})
	case '{':
		if o.only == anyShape && isLookupEvents(b) {
			parseLookupEvents(b, depth, o)
			return
		}
		// Decoded strings point into b instead of being copied: a record copies the ones
		// it keeps into one allocation of its own. The decoding space is reused.
		space := wires.Get().(*wireSpace)
		w := &space.w
		*w = fastWire{}
		if bytes.HasPrefix(b, logFileStart) {
			// A log file's records are decoded into the last one's space, zeroed: the
			// decoder fills elements in place and leaves absent fields as they were.
			// (Only where Records is sure to be present: a non-nil Records means a log
			// file.)
			clear(space.recs[:cap(space.recs)])
			w.Records = space.recs[:0]
		}
		err := json.UnmarshalWithOption(b, w, json.DecodeNoCopyString())
		if cap(w.Records) > cap(space.recs) {
			space.recs = w.Records[:0]
		}
		if err == nil && (!recordsOnly(w.Records, depth) || w.DetailType != "" && (w.Detail == nil || !isRecord(w.Detail, depth))) {
			// An item of Records, or a detail, that is not a record (an envelope, a
			// log file, null): the tolerant decode keeps it raw and parses it alone.
			err = errNotFlat
		}
		if err == nil {
			parseObject(w, depth, o)
		}
		wires.Put(space)
		if err == nil {
			return
		}
		var tw tolerantWire
		if err := json.Unmarshal(b, &tw); err != nil {
			o.undecodable(b, err)
			return
		}
		parseObject(&tw, depth, o)
	default:
		if o.only == onlyEnvelope && json.Valid(b) {
			o.bad(malformed(ReasonForged, "a JSON %s, not an EventBridge event", jsonKind(b[0])))
		} else if json.Valid(b) {
			o.bad(malformed(ReasonNotRecord, "a JSON %s", jsonKind(b[0])))
		} else {
			o.bad(malformed(ReasonNotJSON, "starts with %q", truncate(string(b), 16)))
		}
	}
}

// undecodable counts a value the decoder refused: not JSON at all, or JSON of the wrong
// shape.
func (o *out) undecodable(b []byte, err error) {
	if !json.Valid(b) {
		o.bad(malformed(ReasonNotJSON, "%s", shortErr(err)))
	} else {
		o.bad(malformed(ReasonBadShape, "%s", shortErr(err)))
	}
}

var errNotFlat = errors.New("a log file whose items are not all records")

// lookupEvents is what `aws cloudtrail lookup-events` prints: the last 90 days of a
// region's management events, each event's record a JSON string (CloudTrailEvent).
// https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_Event.html
type lookupEvents struct {
	Events []struct {
		CloudTrailEvent *string `json:"CloudTrailEvent"`
	} `json:"Events"`
}

// isLookupEvents: an object whose first key is Events, as lookup-events prints it.
func isLookupEvents(b []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(b[1:], " \t\r\n"), []byte(`"Events"`))
}

// parseLookupEvents parses lookup-events output: each event's CloudTrailEvent is one record
// (not an envelope, not a log file), and the records come out in event-time order.
func parseLookupEvents(b []byte, depth int, o *out) {
	var le lookupEvents
	if err := json.Unmarshal(b, &le); err != nil {
		o.undecodable(b, err)
		return
	}
	o.collected(func(c *out) {
		inner := *c
		inner.only = onlyRecord
		for _, e := range le.Events {
			if e.CloudTrailEvent == nil {
				c.bad(malformed(ReasonNotRecord, "a lookup-events event without its CloudTrailEvent"))
				continue
			}
			parseValue([]byte(*e.CloudTrailEvent), depth+1, &inner)
		}
	})
}

func (w *wire[S, Q, P, R, D]) hasDetail() bool {
	switch d := any(w.Detail).(type) {
	case *fastRecord:
		return d != nil
	case json.RawMessage:
		return d != nil
	}
	return false
}

// recordsOnly reports whether every item of a log file decoded as a record.
func recordsOnly(recs []fastRecord, depth int) bool {
	for i := range recs {
		if !isRecord(&recs[i], depth) {
			return false
		}
	}
	return true
}

// isRecord reports whether a value one level below depth decoded as a record.
func isRecord(r *fastRecord, depth int) bool {
	return depth+1 <= maxDepth && (r.EventName != "" || r.EventSource != "")
}

func parseObject[S ~string, Q requestOf[S], P responseOf[S], R, D any](w *wire[S, Q, P, R, D], depth int, o *out) {
	envelope := w.DetailType != "" || w.hasDetail()
	switch {
	case o.only == onlyEnvelope && (!envelope || w.Records != nil):
		o.bad(malformed(ReasonForged, "a bare record or log file, not an EventBridge event"))
		return
	case o.only == onlyRecord && (w.Records != nil || envelope):
		o.bad(malformed(ReasonForged, "an envelope's detail that is not one record"))
		return
	}
	switch {
	case w.Records != nil:
		switch recs := any(w.Records).(type) {
		case []fastRecord:
			hp := heldRecs.Get().(*[]*Record)
			h := (*hp)[:0]
			for i := range recs {
				rec, err := recs[i].record(o.latest, o.arena)
				if err != nil {
					o.bad(err)
					continue
				}
				h = append(h, rec)
			}
			o.inOrder(h)
			clear(h)
			*hp = h[:0]
			heldRecs.Put(hp)
		case []json.RawMessage:
			o.collected(func(c *out) {
				for _, it := range recs {
					parseValue(it, depth+1, c)
				}
			})
		}
	case envelope:
		if w.DetailType != detailTypeAPICall {
			o.bad(malformed(ReasonNotAPICall, "detail-type %q", truncate(w.DetailType, 64)))
			return
		}
		// Only AWS's own events count: "aws." sources are reserved for AWS services, and
		// the account is the one whose trail logged the call. The content is not logged.
		if !strings.HasPrefix(string(w.EnvSource), "aws.") {
			o.bad(malformed(ReasonForged, "envelope source is not aws.*"))
			return
		}
		account := string(w.EnvAccount)
		inner := &out{latest: o.latest, bad: o.bad, arena: o.arena, only: anyShape, emit: func(r *Record) {
			if account != r.RecipientAccount {
				o.bad(malformed(ReasonForged, "envelope account is not the record's recipientAccountId"))
				return
			}
			o.emit(r)
		}}
		switch d := any(w.Detail).(type) {
		case *fastRecord:
			if rec, err := d.record(o.latest, o.arena); err != nil {
				o.bad(err)
			} else {
				inner.emit(rec)
			}
		case json.RawMessage:
			if o.only == onlyEnvelope {
				inner.only = onlyRecord
			}
			parseValue(d, depth+1, inner)
		}
	default:
		rec, err := w.wireRecord.record(o.latest, o.arena)
		if err != nil {
			o.bad(err)
			return
		}
		o.emit(rec)
	}
}

func (w *wireRecord[S, Q, P]) record(latest time.Time, a *arena) (*Record, error) {
	if w.EventName == "" || w.EventSource == "" {
		return nil, malformed(ReasonNotRecord, "no eventName or eventSource")
	}
	ts := string(w.EventTime)
	if ts == "" {
		ts = string(w.Timestamp)
	}
	if ts == "" {
		return nil, malformed(ReasonNoEventTime, "")
	}
	t, err := ParseTime(ts)
	if err != nil {
		return nil, malformed(ReasonBadEventTime, "%q", truncate(ts, 40))
	}
	if t.Before(earliestTime) || t.After(latest) {
		return nil, malformed(ReasonOutOfRange, "%s", t.Format(time.RFC3339))
	}
	r := a.record()
	*r = Record{
		EventID:          string(w.EventID),
		Time:             t,
		Source:           string(w.EventSource),
		Name:             string(w.EventName),
		Region:           string(w.AWSRegion),
		SourceIP:         string(w.SourceIPAddress),
		UserAgent:        string(w.UserAgent),
		ErrorCode:        string(w.ErrorCode),
		VPCEndpointID:    string(w.VPCEndpointID),
		VPCEndpointAcct:  string(w.VPCEndpointAccount),
		RecipientAccount: string(w.RecipientAccountID),
	}
	id := &w.UserIdentity
	r.Identity = Identity{
		Type:          string(id.Type),
		PrincipalID:   string(id.PrincipalID),
		ARN:           string(id.ARN),
		AccountID:     string(id.AccountID),
		AccessKeyID:   string(id.AccessKeyID),
		InvokedBy:     string(id.InvokedBy),
		IssuerARN:     string(id.SessionContext.SessionIssuer.ARN),
		IssuerAccount: string(id.SessionContext.SessionIssuer.AccountID),
		IssuerName:    string(id.SessionContext.SessionIssuer.UserName),
	}
	rq := w.RequestParameters.get()
	r.Request = Request{
		RoleARN:         string(rq.RoleARN),
		RoleSessionName: string(rq.RoleSessionName),
		FunctionName:    string(rq.FunctionName),
		Role:            string(rq.Role),
		RoleName:        string(rq.RoleName),
		TrustPolicy:     string(rq.AssumeRolePol),
	}
	if r.Request.TrustPolicy == "" {
		r.Request.TrustPolicy = string(rq.PolicyDocument)
	}
	rs := w.ResponseElements.get()
	r.IssuedKeyID = string(rs.Credentials.V.AccessKeyID)
	if e := string(rs.Credentials.V.Expiration); e != "" {
		r.IssuedKeyExpires, _ = parseExpiration(e)
	}
	r.ResponseRoleARN = string(rs.Role.V.ARN)
	r.ConsoleFailure = string(rs.ConsoleLogin) == "Failure"
	r.Presigned = string(w.AdditionalData.AuthenticationMethod) == "QueryString"
	r.own(a)
	r.Addr = ParseAddr(r.SourceIP)
	return r, nil
}

// own copies the record's strings, which point into the bytes it was decoded from, into
// one allocation of its own: a record keeps about a third of its line, and the line's
// buffer is free for the next one.
func (r *Record) own(a *arena) {
	id, rq := &r.Identity, &r.Request
	fields := [...]*string{
		// The fields with a few values in a whole history (arena.common): the first
		// nCommon. Accounts and roles are not among them: hundreds of accounts, thousands
		// of roles, would take each other's slots record after record.
		&r.Source, &r.Name, &r.Region, &r.UserAgent, &r.ErrorCode, &id.Type, &id.InvokedBy, &id.IssuerName,
		// The others: accounts, roles, keys, addresses, sessions.
		&r.VPCEndpointID, &r.VPCEndpointAcct, &r.RecipientAccount, &id.AccountID, &id.IssuerARN,
		&id.IssuerAccount, &rq.RoleARN, &r.EventID, &r.SourceIP, &r.IssuedKeyID, &r.ResponseRoleARN,
		&id.PrincipalID, &id.ARN, &id.AccessKeyID, &rq.RoleSessionName, &rq.FunctionName, &rq.Role,
		&rq.RoleName, &rq.TrustPolicy,
	}
	const nCommon = 8
	own := fields[:]
	if a != nil {
		a.share(fields[:nCommon])
		own = fields[nCommon:]
	}
	copyInto(a.strings(lenAll(own)), own)
}

// OwnStrings copies the strings into one allocation of their own, so that they keep
// nothing else alive (the bytes they were decoded from, a record's chunk).
func OwnStrings(fields ...*string) {
	var b strings.Builder
	b.Grow(lenAll(fields))
	copyInto(&b, fields)
}

func lenAll(fields []*string) int {
	n := 0
	for _, f := range fields {
		n += len(*f)
	}
	return n
}

// copyInto copies each string into b, which has room for them all (the substrings
// handed out stay valid as b grows within it), and points the string there.
func copyInto(b *strings.Builder, fields []*string) {
	for _, f := range fields {
		if *f != "" {
			start := b.Len()
			b.WriteString(*f)
			*f = b.String()[start:]
		}
	}
}

// ParseAddr parses a sourceIPAddress. It returns the zero Addr for anything that is not an
// IPv4 or IPv6 address (service names, "AWS Internal", scrambled values such as
// "253.252.51.07", whose leading zero makes it ambiguous). IPv4-mapped IPv6 is unmapped and
// a zone is dropped.
func ParseAddr(s string) netip.Addr {
	if s == "" || len(s) > 64 {
		return netip.Addr{}
	}
	c := s[0]
	if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':') {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// Time layouts seen in CloudTrail and its forwarders: RFC 3339 (with or without fractional
// seconds) and the space-separated form some pipelines write ("2024-06-02 20:27:12").
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"}

// parseExpiration reads credentials.expiration: CloudTrail writes it as
// "Jan 2, 2006, 3:04:05 PM" (no zone: UTC), some forwarders as RFC 3339.
func parseExpiration(s string) (time.Time, error) {
	for _, l := range []string{"Jan 2, 2006, 3:04:05 PM", "Jan 2, 2006 3:04:05 PM"} {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return ParseTime(s)
}

// ParseTime parses an eventTime in any layout CloudTrail writers use; times without a zone
// are UTC.
func ParseTime(s string) (time.Time, error) {
	if t, ok := parseZulu(s); ok {
		return t, nil
	}
	var err error
	for _, l := range timeLayouts {
		var t time.Time
		if t, err = time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, err
}

// parseZulu reads the form CloudTrail writes, "2006-01-02T15:04:05Z", without the
// general parser; anything else is left to it.
func parseZulu(s string) (time.Time, bool) {
	if len(s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != 'Z' {
		return time.Time{}, false
	}
	var v [6]int
	for i, at := range [6]int{0, 5, 8, 11, 14, 17} {
		w := 2
		if i == 0 {
			w = 4
		}
		for _, c := range []byte(s[at : at+w]) {
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
			v[i] = v[i]*10 + int(c-'0')
		}
	}
	if v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 59 {
		return time.Time{}, false // time.Parse says why
	}
	t := time.Date(v[0], time.Month(v[1]), v[2], v[3], v[4], v[5], 0, time.UTC)
	if t.Day() != v[2] {
		return time.Time{}, false // February 30th: time.Parse refuses it
	}
	return t, true
}

// Read reads every record in r: gzip is detected by its magic bytes; the content is NDJSON
// (one record, envelope or log file a line) when its first line is a whole JSON value, and
// one JSON document otherwise. emit is called for each record, bad for each skipped value.
// Only I/O errors are returned.
func Read(r io.Reader, emit func(*Record), bad func(error)) error {
	return ReadN(r, 1, emit, bad)
}

// ReadN is Read with the parsing of NDJSON lines spread over workers goroutines: emit and
// bad are still called from the caller's goroutine, in the order Read calls them. One
// worker parses in the caller's goroutine.
func ReadN(r io.Reader, workers int, emit func(*Record), bad func(error)) error {
	return ReadWith(r, ReadOptions{Workers: workers}, emit, bad)
}

// ReadOptions shape ReadWith.
type ReadOptions struct {
	Workers int // as ReadN's
	// Small: the input is one of many read side by side (a file per account, hundreds
	// merged by event time): its read buffer, record blocks and string chunks are small,
	// since each holds memory until the records it carries are decided.
	Small bool
	// Arena, when set, is where records and their strings come from instead of the
	// reader's own: inputs read in turn by one goroutine (coroutines of one merge) share
	// one. Never share one between goroutines that run side by side.
	Arena *Arena
	// Shared, when set, is the read buffer, shared as Arena is (one worker only), and
	// BeforeRead is called before each read of the input: the only point where the
	// caller may switch to another input sharing it. false stops the reading
	// (ErrStopped).
	Shared     *SharedBuffer
	BeforeRead func() bool
}

// Arena is where records and their strings are cut from, shared by the readers of inputs
// read in turn by one goroutine. Hundreds of per-account files read side by side, each
// with an arena of its own, each learnt the same few hundred common values (user agents,
// services, APIs) into a small table of its own, cold in the cache by the time its stream
// came round again, and cut its strings from chunks of its own.
type Arena struct{ a arena }

// NewArena returns an arena for ReadOptions.Arena.
func NewArena() *Arena { return &Arena{} }

// eventTimeKey is how CloudTrail writes a record's eventTime key.
var eventTimeKey = []byte(`"eventTime":"`)

// EventTime reads a line's eventTime without parsing the line: the value of its first
// "eventTime" key, written as CloudTrail writes it ("2006-01-02T15:04:05Z"); false for
// any other line. A hint, for finding where a file goes back in time: the first such key
// of a hostile line may be nested in another field.
func EventTime(line []byte) (time.Time, bool) {
	i := bytes.Index(line, eventTimeKey)
	if i < 0 {
		return time.Time{}, false
	}
	v := line[i+len(eventTimeKey):]
	if len(v) < 21 || v[20] != '"' {
		return time.Time{}, false
	}
	return parseZulu(string(v[:20]))
}

// ReadWith is ReadN with options.
func ReadWith(r io.Reader, opt ReadOptions, emit func(*Record), bad func(error)) error {
	workers := opt.Workers
	// A trail folder is tens of thousands of small gzipped files: their readers, buffers
	// and arena are reused from one file to the next, not allocated for each.
	pool := &readers
	if opt.Small {
		pool = &smallReaders
	}
	rs := pool.Get().(*readerSet)
	defer pool.Put(rs)
	o := &out{emit: emit, bad: bad, latest: Now().Add(futureSlack), arena: &rs.arena}
	if opt.Arena != nil {
		o.arena = &opt.Arena.a
	}
	var pp *parallelParse
	if workers > 1 {
		pp = newParallelParse(workers, o)
		defer pp.close()
		// What Read reports itself comes after the lines before it.
		bad = func(err error) { pp.flush(); o.bad(err) }
	}
	var br bufferedReader
	if opt.Shared != nil && workers <= 1 {
		// Lines are read from the shared buffer, what the file holds once inflated: a
		// gzipped stream reads its compressed bytes through a small buffer of its own
		// (which a plain one reads past), and keeps its inflater's state (a 32 KiB
		// window), but no buffer of inflated bytes. 400 gzipped per-account files each
		// held 64 KiB of them: 174 MB at its peak, the collector working without pause.
		// A plain stream holds only the 16 bytes its magic was peeked through: 1,000
		// per-account files each held a 4 KiB buffer for nothing, 3.6 MB of the live
		// memory that had the collector run without pause under the replay's limit.
		if rs.peek == nil {
			rs.peek = bufio.NewReaderSize(r, 16) // bufio's smallest
		}
		rs.peek.Reset(r)
		rs.rest = drainThen{rs.peek, r}
		src := io.Reader(&rs.rest)
		if isGzip(rs.peek) {
			if rs.small == nil {
				rs.small = bufio.NewReaderSize(nil, 4<<10)
			}
			rs.small.Reset(&rs.rest)
			z, err := rs.gunzip(rs.small)
			if err != nil {
				return err
			}
			defer rs.zr.Close()
			src = z
		}
		rs.shared.reset(opt.Shared, src, opt.BeforeRead)
		defer rs.shared.release()
		br = &rs.shared
	} else {
		if opt.BeforeRead != nil {
			r = hooked{r, opt.BeforeRead}
		}
		if rs.raw == nil {
			rs.raw = bufio.NewReaderSize(r, rs.rawSize)
		}
		rs.raw.Reset(r)
		br = rs.raw
		if isGzip(rs.raw) {
			z, err := rs.gunzip(rs.raw)
			if err != nil {
				return err
			}
			defer rs.zr.Close()
			if rs.unzipped == nil {
				rs.unzipped = bufio.NewReaderSize(nil, 64<<10)
			}
			rs.unzipped.Reset(z)
			br = rs.unzipped
		}
	}
	// A UTF-8 byte order mark, as some editors and exporters write, is not an error.
	if b, _ := br.Peek(3); bytes.Equal(b, []byte{0xef, 0xbb, 0xbf}) {
		br.Discard(3)
	}
	lr := &rs.lines
	*lr = lineReader{br: br, max: maxLine, buf: lr.buf[:0]}
	if cap(lr.buf) > 1<<20 {
		lr.buf = nil // a huge line's buffer is not kept for the next file
	}
	garbage := 0 // non-JSON lines before the first JSON one
	for seen := false; ; {
		line, err := lr.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errLineTooLong) {
			bad(malformed(ReasonTooLong, "a line longer than %d MiB, skipped", maxLine>>20))
			seen = true
			continue
		}
		if errors.Is(err, errUnzippedTooLarge) {
			bad(malformed(ReasonTooLong, "a gzipped file %s, the rest skipped", errUnzippedTooLarge))
			break
		}
		if err != nil {
			if pp != nil {
				pp.flush()
			}
			return scanErr(err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if !seen {
			if line[0] != '{' && line[0] != '[' && !json.Valid(line) {
				garbage++ // a licence, YAML, a signature, or junk before NDJSON
				continue
			}
			seen = true
			if garbage > 0 {
				bad(malformed(ReasonNotJSON, "%d lines before the first JSON value", garbage))
			}
			// Most first lines are whole values (NDJSON, or a one-line log file): parsed at
			// once, without a separate validation pass. Only a first line that is not
			// JSON may be the start of a pretty-printed document.
			var firstBad []error
			emitted := false
			parseValue(line, 0, &out{latest: o.latest, arena: o.arena, emit: func(r *Record) { emitted = true; emit(r) }, bad: func(err error) { firstBad = append(firstBad, err) }})
			if emitted || len(firstBad) != 1 || Reason(firstBad[0]) != ReasonNotJSON || !incomplete(line) {
				for _, err := range firstBad {
					bad(err)
				}
				continue
			}
			// The first line of a pretty-printed document, or a truncated first record of
			// NDJSON: the next line tells which. (The reader reuses its buffer: the first
			// line is kept aside.)
			line = bytes.Clone(line)
			next, err := lr.nextNonEmpty()
			if err != nil && err != io.EOF && !errors.Is(err, errLineTooLong) {
				return scanErr(err)
			}
			if json.Valid(next) {
				bad(malformed(ReasonNotJSON, "a truncated first line"))
				parseValue(next, 0, o)
				continue
			}
			return readDocument(lr, line, next, o)
		}
		// Records own their strings: the reader's buffer is reused for the next line.
		if pp != nil {
			pp.add(line)
			continue
		}
		parseValue(line, 0, o)
	}
	if pp != nil {
		pp.flush()
	}
	if garbage > 0 && garbage == lr.lines {
		bad(malformed(ReasonNotJSON, "no JSON in %d lines", garbage))
	}
	return nil
}

// readDocument reads the rest of a pretty-printed document, whose first lines are given,
// and parses it whole. A document that is not valid JSON (cut off, or NDJSON whose first
// record was cut) is read again line by line: every whole record on a line of its own
// still counts.
func readDocument(lr *lineReader, first, second []byte, o *out) error {
	doc := append(append(append(bytes.Clone(first), '\n'), second...), '\n')
	for {
		line, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				o.bad(malformed(ReasonTooLong, "a line longer than %d MiB, skipped", maxLine>>20))
				continue
			}
			if errors.Is(err, errUnzippedTooLarge) {
				o.bad(malformed(ReasonTooLong, "a gzipped file %s, the rest skipped", errUnzippedTooLarge))
				break
			}
			return scanErr(err)
		}
		if len(doc)+len(line) > maxDocument {
			o.bad(malformed(ReasonTooLong, "a document larger than %d MiB, skipped", maxDocument>>20))
			return nil
		}
		doc = append(append(doc, line...), '\n')
	}
	if json.Valid(doc) {
		parseValue(doc, 0, o)
		return nil
	}
	salvaged := 0
	for l := range bytes.Lines(doc) { // one line at a time: no slice of them all
		l = bytes.TrimSuffix(bytes.TrimSpace(l), []byte(","))
		if len(l) > 0 && l[0] == '{' && json.Valid(l) {
			salvaged++
			parseValue(l, 0, o)
		}
	}
	o.bad(malformed(ReasonNotJSON, "a document that is not valid JSON (%d whole lines read from it)", salvaged))
	return nil
}

// readerSet is what reading one file needs, kept across files.
type readerSet struct {
	raw, unzipped *bufio.Reader // made for the first input that needs them
	rawSize       int
	peek          *bufio.Reader // a stream's first bytes, under a SharedBuffer
	small         *bufio.Reader // a gzipped stream's compressed bytes, under a SharedBuffer
	rest          drainThen
	shared        sharedReader
	capped        capped
	zr            gzip.Reader
	lines         lineReader
	arena         arena
}

var readers = sync.Pool{New: func() any {
	// The buffers are made for the first input that needs them: unzipped for the first
	// gzipped one, raw for the first not read through a SharedBuffer.
	return &readerSet{rawSize: 64 << 10}
}}

// smallReaders are ReadOptions.Small's: a record an allocation (a block of them would
// live as long as its last record), string chunks of 2 KiB, and 16 KiB read buffers:
// 400 files read side by side made 58,000 reads of 8 KiB, 0.9 s of system time on the
// dense history's 475 MB; with 32 KiB, 0.65 s. A replay hands a stream's records on as
// each read is parsed, so what a read brings in is held as records until decided:
// 16 KiB holds half as many as 32 KiB, which made the collector run twice as often.
// Such streams now read through a SharedBuffer (of 16 KiB for the same reason), and hold
// no read buffer of their own: made anyway, 400 of them went unused, 6.4 MB that only had
// the collector run more often.
var smallReaders = sync.Pool{New: func() any {
	return &readerSet{rawSize: 16 << 10, arena: arena{maxBlock: 1, chunk: 2 << 10, commonSlots: 128}}
}}

// gunzip resets the set's inflater to src and returns what it inflates, bounded by
// maxUnzipped; the caller closes rs.zr.
func (rs *readerSet) gunzip(src io.Reader) (io.Reader, error) {
	if err := rs.zr.Reset(src); err != nil {
		return nil, fmt.Errorf("cloudtrail: gzip: %w", err)
	}
	rs.capped = capped{r: &rs.zr, left: maxUnzipped}
	return &rs.capped, nil
}

// isGzip reports whether what br holds next starts with gzip's magic bytes.
func isGzip(br *bufio.Reader) bool {
	magic, _ := br.Peek(2)
	return len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b
}

// drainThen reads what b holds, then r past it (b reads r): a plain stream's first bytes,
// peeked for gzip's magic, then its file directly into the shared buffer.
type drainThen struct {
	b *bufio.Reader
	r io.Reader
}

func (d *drainThen) Read(p []byte) (int, error) {
	if d.b.Buffered() > 0 {
		return d.b.Read(p)
	}
	return d.r.Read(p)
}

// bufferedReader is what ReadWith uses of a bufio.Reader (or a sharedReader).
type bufferedReader interface {
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	ReadSlice(delim byte) ([]byte, error)
}

// hooked calls before ahead of each read of r: ReadOptions.BeforeRead without a shared
// buffer.
type hooked struct {
	r      io.Reader
	before func() bool
}

func (h hooked) Read(p []byte) (int, error) {
	if !h.before() {
		return 0, ErrStopped
	}
	return h.r.Read(p)
}

// errLineTooLong: a line longer than the reader's bound, skipped.
var errLineTooLong = errors.New("line too long")

// lineReader reads lines of any length in bounded memory: a line longer than max is
// skipped as it is read, never held.
type lineReader struct {
	br    bufferedReader
	buf   []byte
	max   int
	lines int // non-empty lines read
}

// next returns the next line without its newline; errLineTooLong for a line it skipped.
func (l *lineReader) next() ([]byte, error) {
	l.buf = l.buf[:0]
	frag, err := l.br.ReadSlice('\n')
	if err == nil && len(frag) <= l.max {
		// The whole line is in the reader's buffer: no copy. It stays valid until the next
		// read, as a copied line does.
		if len(bytes.TrimSpace(frag)) > 0 {
			l.lines++
		}
		return frag[:len(frag)-1], nil
	}
	tooLong := false
	for {
		if !tooLong {
			if len(l.buf)+len(frag) > l.max {
				tooLong, l.buf = true, l.buf[:0]
			} else {
				l.buf = append(l.buf, frag...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			frag, err = l.br.ReadSlice('\n')
			continue
		case err == io.EOF && (len(l.buf) > 0 || tooLong):
		case err != nil:
			return nil, err
		}
		if tooLong {
			l.lines++
			return nil, errLineTooLong
		}
		if len(bytes.TrimSpace(l.buf)) > 0 {
			l.lines++
		}
		return bytes.TrimSuffix(l.buf, []byte("\n")), nil
	}
}

// nextNonEmpty returns the next line that is not blank, trimmed.
func (l *lineReader) nextNonEmpty() ([]byte, error) {
	for {
		line, err := l.next()
		if err != nil {
			return nil, err
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			return bytes.Clone(line), nil
		}
	}
}

// incomplete reports whether b is the start of a JSON value that goes on past it (the first
// line of a pretty-printed document), rather than a broken line of NDJSON.
func incomplete(b []byte) bool {
	var v stdjson.RawMessage
	err := stdjson.NewDecoder(bytes.NewReader(b)).Decode(&v)
	return errors.Is(err, io.ErrUnexpectedEOF)
}

// maxLine bounds one NDJSON line (a whole single-line log file counts as one line):
// CloudTrail's log files are far smaller. A longer line is skipped in bounded memory.
const maxLine = 64 << 20

// maxDocument bounds a pretty-printed document, which is read whole (CloudTrail writes
// its files on one line: this is for exports and hand-made files). Reading one costs
// about twice its size.
const maxDocument = 32 << 20

// maxUnzipped bounds what one gzipped file may decompress to: CloudTrail's are kilobytes
// to a few megabytes; a file that inflates past this is a bomb, and its rest is skipped.
const maxUnzipped = 1 << 30

// errUnzippedTooLarge ends a gzipped file that inflates past maxUnzipped.
var errUnzippedTooLarge = fmt.Errorf("decompressed past %d MiB", maxUnzipped>>20)

// capped reads at most left bytes, then fails with errUnzippedTooLarge.
type capped struct {
	r    io.Reader
	left int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errUnzippedTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

func scanErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, bufio.ErrTooLong) {
		return fmt.Errorf("cloudtrail: a line longer than %d MiB", maxLine>>20)
	}
	if errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("cloudtrail: damaged gzip: %w", err)
	}
	return err
}

func jsonKind(c byte) string {
	switch c {
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func shortErr(err error) string { return truncate(err.Error(), 120) }

func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
