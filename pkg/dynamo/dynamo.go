// Package dynamo is the detector's state in one DynamoDB table: the detect.Store of the
// Lambda and of `replay --store dynamodb://TABLE`.
//
// Items are {pk: key, v: value, exp: expiry in Unix seconds}; exp is the table's TTL
// attribute. TTL deletion is lazy (DynamoDB deletes expired items within a few days), so
// every read filters expired items itself.
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html
//
// Puts are gathered and written with BatchWriteItem (25 items a request) on Flush: the
// detector already writes each baseline fact at most once a day, and the batch makes the
// rest cheap. Reads see the gathered writes. Claims are conditional writes that go out at
// once.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/outsider-sec/outsider/pkg/config"
	"github.com/outsider-sec/outsider/pkg/detect"
)

// API is the part of the DynamoDB client the store calls.
type API interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	BatchWriteItem(context.Context, *dynamodb.BatchWriteItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

var (
	_ detect.Store     = (*Store)(nil)
	_ detect.SwapAller = (*Store)(nil)
)

// Attribute names of the table, as the stack creates it.
const (
	AttrKey     = config.TableKey
	AttrValue   = config.TableValue
	AttrExpires = config.TableExpires
)

// Store is a detect.Store on DynamoDB. Safe for concurrent use.
type Store struct {
	api   API
	table string

	mu      sync.Mutex
	pending map[string]item
	cache   map[string]item // immutable facts read before (keys issued)
	Calls   int             // requests made: Get, Put, BatchWrite
	Written int             // items written (each one write request unit or more)
	Read    int             // items read (strongly consistent: one read unit each)
}

type item struct {
	value []byte
	exp   int64 // Unix seconds; 0: never
}

func (it item) live(now time.Time) bool { return it.exp == 0 || it.exp > now.Unix() }

// New returns a store on table.
func New(api API, table string) *Store {
	return &Store{api: api, table: table, pending: map[string]item{}, cache: map[string]item{}}
}

const maxCache = 50_000

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// Get implements detect.Store.
func (s *Store) Get(ctx context.Context, key string, now time.Time) ([]byte, bool, error) {
	s.mu.Lock()
	if it, ok := s.pending[key]; ok {
		s.mu.Unlock()
		if !it.live(now) {
			return nil, false, nil
		}
		return clone(it.value), true, nil
	}
	if it, ok := s.cache[key]; ok {
		s.mu.Unlock()
		if !it.live(now) {
			return nil, false, nil
		}
		return clone(it.value), true, nil
	}
	s.mu.Unlock()
	it, found, err := s.read(ctx, key)
	if err != nil || !found {
		return nil, false, err
	}
	if detect.Immutable(key) {
		s.mu.Lock()
		if len(s.cache) >= maxCache {
			clear(s.cache)
		}
		s.cache[key] = it
		s.mu.Unlock()
	}
	if !it.live(now) {
		return nil, false, nil
	}
	return it.value, true, nil
}

// read is a strongly consistent GetItem: a finding another worker just claimed must be seen.
func (s *Store) read(ctx context.Context, key string) (item, bool, error) {
	s.mu.Lock()
	s.Calls++
	s.Read++
	s.mu.Unlock()
	out, err := s.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            map[string]types.AttributeValue{AttrKey: &types.AttributeValueMemberS{Value: key}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return item{}, false, fmt.Errorf("dynamo: get %s: %w", key, err)
	}
	if out.Item == nil {
		return item{}, false, nil
	}
	it, err := decode(out.Item)
	if err != nil {
		return item{}, false, fmt.Errorf("dynamo: get %s: %w", key, err)
	}
	return it, true, nil
}

// Put implements detect.Store. The write is gathered until Flush.
func (s *Store) Put(_ context.Context, key string, value []byte, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending[key] = item{value: clone(value), exp: unix(expires)}
	return nil
}

// Claim implements detect.Store with a conditional PutItem:
// attribute_not_exists(pk) OR exp <= :now.
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html
func (s *Store) Claim(ctx context.Context, key string, value []byte, now, expires time.Time) (bool, error) {
	s.mu.Lock()
	if it, ok := s.pending[key]; ok && it.live(now) {
		s.mu.Unlock()
		return false, nil
	}
	s.Calls++
	s.Written++
	s.mu.Unlock()
	av := encode(key, item{value: value, exp: unix(expires)})
	_, err := s.api.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                 aws.String(s.table),
		Item:                      av,
		ConditionExpression:       aws.String("attribute_not_exists(#k) OR (attribute_exists(#e) AND #e <= :now)"),
		ExpressionAttributeNames:  map[string]string{"#k": AttrKey, "#e": AttrExpires},
		ExpressionAttributeValues: map[string]types.AttributeValue{":now": &types.AttributeValueMemberN{Value: strconv.FormatInt(now.Unix(), 10)}},
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		// Lost, or won by our own earlier attempt whose answer was lost (the SDK retried a
		// request DynamoDB had carried out): the item then holds exactly our value.
		it, found, rerr := s.read(ctx, key)
		if rerr != nil {
			return false, fmt.Errorf("dynamo: claim %s: read back: %w", key, rerr)
		}
		return found && string(it.value) == string(value) && it.exp == unix(expires), nil
	case err != nil:
		return false, fmt.Errorf("dynamo: claim %s: %w", key, err)
	}
	s.mu.Lock()
	delete(s.pending, key) // the claim supersedes an older gathered write
	s.mu.Unlock()
	return true, nil
}

// Swap implements detect.Store with a conditional PutItem: attribute_not_exists(pk) when
// old is nil, else v = :old (binary values compare byte by byte).
// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.OperatorsAndFunctions.html
func (s *Store) Swap(ctx context.Context, key string, old, value []byte, expires time.Time) (bool, error) {
	s.mu.Lock()
	if it, ok := s.pending[key]; ok {
		// A gathered Put of the same key goes first: the condition is on what it wrote.
		s.mu.Unlock()
		if err := s.writeOne(ctx, key, it); err != nil {
			return false, err
		}
		s.mu.Lock()
	}
	s.Calls++
	s.Written++
	s.mu.Unlock()
	cond, names, values := swapCondition(old)
	_, err := s.api.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.table), Item: encode(key, item{value: value, exp: unix(expires)}),
		ConditionExpression: aws.String(cond), ExpressionAttributeNames: names, ExpressionAttributeValues: values,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		// Lost, or won by our own earlier attempt whose answer was lost.
		it, found, rerr := s.read(ctx, key)
		if rerr != nil {
			return false, fmt.Errorf("dynamo: swap %s: read back: %w", key, rerr)
		}
		return found && string(it.value) == string(value), nil
	case err != nil:
		return false, fmt.Errorf("dynamo: swap %s: %w", key, err)
	}
	return true, nil
}

// transactLimit is TransactWriteItems' maximum number of actions a request.
// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
const transactLimit = 100

// SwapAll implements detect.SwapAller with TransactWriteItems, 100 conditional puts a
// request. A transaction is all or nothing: when one condition fails, none is written, and
// the cancellation reasons say which failed. Those are reported lost (the caller reads
// them again and merges); the rest are sent again without them, so one conflict never
// fails the other writes of its chunk. The SDK's idempotency token makes a retried request
// whose first answer was lost succeed rather than fail on itself.
func (s *Store) SwapAll(ctx context.Context, swaps []detect.Swap) ([]bool, error) {
	ok := make([]bool, len(swaps))
	for start := 0; start < len(swaps); start += transactLimit {
		idx := make([]int, 0, transactLimit) // the swaps of this chunk still to write
		for i := start; i < min(start+transactLimit, len(swaps)); i++ {
			idx = append(idx, i)
		}
		// Each round writes the chunk or drops at least one lost swap from it.
		for len(idx) > 0 {
			lost, err := s.transact(ctx, swaps, idx)
			if err != nil {
				return nil, err
			}
			if lost == nil {
				for _, i := range idx {
					ok[i] = true
				}
				break
			}
			keep := idx[:0]
			for j, i := range idx {
				if !lost[j] {
					keep = append(keep, i)
				}
			}
			if len(keep) == len(idx) {
				break // cancelled for no item's reason (throttled): the caller retries all
			}
			idx = keep
		}
	}
	return ok, nil
}

// transact writes swaps[idx...] in one transaction. lost is nil when it was written; when
// it was cancelled, lost[j] tells whether idx[j] was a reason (a failed condition, a
// conflict with another transaction).
func (s *Store) transact(ctx context.Context, swaps []detect.Swap, idx []int) (lost []bool, err error) {
	items := make([]types.TransactWriteItem, len(idx))
	for j, i := range idx {
		sw := swaps[i]
		s.mu.Lock()
		it, pending := s.pending[sw.Key]
		s.mu.Unlock()
		if pending {
			if err := s.writeOne(ctx, sw.Key, it); err != nil {
				return nil, err
			}
		}
		cond, names, values := swapCondition(sw.Old)
		items[j] = types.TransactWriteItem{Put: &types.Put{
			TableName: aws.String(s.table), Item: encode(sw.Key, item{value: sw.Value, exp: unix(sw.Expires)}),
			ConditionExpression: aws.String(cond), ExpressionAttributeNames: names, ExpressionAttributeValues: values,
		}}
	}
	s.mu.Lock()
	s.Calls++
	s.Written += 2 * len(items) // a transactional write costs two write units
	s.mu.Unlock()
	_, err = s.api.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
	var tce *types.TransactionCanceledException
	switch {
	case err == nil:
		return nil, nil
	case errors.As(err, &tce):
		// One reason per item, in order; "None" for an item that was not the cause.
		// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
		lost = make([]bool, len(idx))
		for j, r := range tce.CancellationReasons {
			if j < len(lost) && aws.ToString(r.Code) != "" && aws.ToString(r.Code) != "None" {
				lost[j] = true
			}
		}
		return lost, nil
	}
	return nil, fmt.Errorf("dynamo: transact %d writes: %w", len(items), err)
}

// swapCondition is the condition of a conditional put: the key absent (old nil), or
// holding exactly old (binary values compare byte by byte).
func swapCondition(old []byte) (string, map[string]string, map[string]types.AttributeValue) {
	if old == nil {
		return "attribute_not_exists(#k)", map[string]string{"#k": AttrKey}, nil
	}
	return "#v = :old", map[string]string{"#v": AttrValue}, map[string]types.AttributeValue{":old": &types.AttributeValueMemberB{Value: old}}
}

// writeOne writes a gathered Put at once and forgets it.
func (s *Store) writeOne(ctx context.Context, key string, it item) error {
	s.mu.Lock()
	s.Calls++
	s.Written++
	s.mu.Unlock()
	if _, err := s.api.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: encode(key, it)}); err != nil {
		return fmt.Errorf("dynamo: put %s: %w", key, err)
	}
	s.mu.Lock()
	if cur, ok := s.pending[key]; ok && string(cur.value) == string(it.value) {
		delete(s.pending, key)
	}
	s.mu.Unlock()
	return nil
}

// batchLimit is BatchWriteItem's maximum number of items a request.
// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html
const batchLimit = 25

// Flush writes the gathered puts. Items DynamoDB leaves unprocessed (throttling) are sent
// again with backoff; what is still unwritten stays gathered and the error is returned.
func (s *Store) Flush(ctx context.Context) error {
	s.mu.Lock()
	keys := make([]string, 0, len(s.pending))
	for k := range s.pending {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	var errs []error
	for start := 0; start < len(keys); start += batchLimit {
		chunk := keys[start:min(start+batchLimit, len(keys))]
		var reqs []types.WriteRequest
		s.mu.Lock()
		for _, k := range chunk {
			if it, ok := s.pending[k]; ok {
				reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: encode(k, it)}})
			}
		}
		s.mu.Unlock()
		// A chunk that fails does not stop the others: its items stay gathered.
		errs = append(errs, s.write(ctx, reqs))
	}
	return errors.Join(errs...)
}

// write sends one BatchWriteItem request and its unprocessed items until all are written.
// DynamoDB refuses a whole request for one bad item (too large, a bad key): the request is
// then split in halves, down to the bad item alone, which is dropped (it would be refused
// on every later flush) and fails this flush once; the others are written.
func (s *Store) write(ctx context.Context, reqs []types.WriteRequest) error {
	for attempt := 0; len(reqs) > 0; attempt++ {
		if attempt > 0 {
			if attempt > 6 {
				return fmt.Errorf("dynamo: flush: %d items still unprocessed", len(reqs))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(25<<attempt) * time.Millisecond):
			}
		}
		s.mu.Lock()
		s.Calls++
		s.Written += len(reqs)
		s.mu.Unlock()
		out, err := s.api.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{s.table: reqs}})
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "ValidationException" {
			if len(reqs) == 1 {
				s.forget(reqs, nil)
				k := reqs[0].PutRequest.Item[AttrKey].(*types.AttributeValueMemberS).Value
				return fmt.Errorf("dynamo: flush: refused, dropped %.80q: %w", k, err)
			}
			half := len(reqs) / 2
			return errors.Join(s.write(ctx, reqs[:half]), s.write(ctx, reqs[half:]))
		}
		if err != nil {
			return fmt.Errorf("dynamo: flush: %w", err)
		}
		written := reqs
		reqs = out.UnprocessedItems[s.table]
		s.forget(written, reqs)
	}
	return nil
}

func (s *Store) forget(sent, unprocessed []types.WriteRequest) {
	left := map[string]bool{}
	for _, r := range unprocessed {
		if k, ok := r.PutRequest.Item[AttrKey].(*types.AttributeValueMemberS); ok {
			left[k.Value] = true
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range sent {
		k := r.PutRequest.Item[AttrKey].(*types.AttributeValueMemberS).Value
		if left[k] {
			continue
		}
		if it, ok := s.pending[k]; ok {
			v, _ := r.PutRequest.Item[AttrValue].(*types.AttributeValueMemberB)
			if v != nil && string(v.Value) == string(it.value) {
				delete(s.pending, k)
			}
		}
	}
}

// Pending returns the number of gathered writes.
func (s *Store) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

func encode(key string, it item) map[string]types.AttributeValue {
	m := map[string]types.AttributeValue{
		AttrKey:   &types.AttributeValueMemberS{Value: key},
		AttrValue: &types.AttributeValueMemberB{Value: it.value},
	}
	if it.exp != 0 {
		m[AttrExpires] = &types.AttributeValueMemberN{Value: strconv.FormatInt(it.exp, 10)}
	}
	return m
}

func decode(m map[string]types.AttributeValue) (item, error) {
	v, ok := m[AttrValue].(*types.AttributeValueMemberB)
	if !ok {
		return item{}, errors.New("item has no binary value")
	}
	it := item{value: v.Value}
	if e, ok := m[AttrExpires].(*types.AttributeValueMemberN); ok {
		n, err := strconv.ParseInt(e.Value, 10, 64)
		if err != nil {
			return item{}, fmt.Errorf("bad expiry %q", e.Value)
		}
		it.exp = n
	}
	return it, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
