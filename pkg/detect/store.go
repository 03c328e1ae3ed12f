package detect

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Store is the state the detector keeps between records, runs and containers: small values
// under string keys, each with an expiry in event time. It is all the detector asks of a
// database, so that an in-memory map, an embedded file and DynamoDB can each serve.
type Store interface {
	// Get returns the value under key, unless it is absent or expired at now (an expiry
	// at or before now). Stores must filter expired items themselves: TTL deletion is lazy.
	Get(ctx context.Context, key string, now time.Time) (value []byte, ok bool, err error)
	// Put writes value under key, to expire at expires (the zero time: never).
	Put(ctx context.Context, key string, value []byte, expires time.Time) error
	// Claim writes value under key only when key is absent or expired at now, atomically,
	// and reports whether it did. It is how two workers seeing the same theft agree on
	// which one opens the finding.
	Claim(ctx context.Context, key string, value []byte, now, expires time.Time) (bool, error)
	// Swap writes value under key only when key holds exactly old (old nil: key absent),
	// atomically, and reports whether it did. Expired items still count as held: facts
	// are merged, never dropped, by a writer that lost a race.
	Swap(ctx context.Context, key string, old, value []byte, expires time.Time) (bool, error)
	// Flush writes what the store gathered (stores may gather Puts into fewer requests):
	// once it returns, the writes so far outlive this process. Reads see gathered writes
	// before and after.
	Flush(ctx context.Context) error
}

// Swap is one conditional write of SwapAll.
type Swap struct {
	Key        string
	Old, Value []byte // Old nil: the key must be absent
	Expires    time.Time
}

// SwapAller is a store that makes many conditional writes in few requests (DynamoDB's
// transactions). ok[i] is false where the write did not happen: the detector reads that
// key again, merges, and tries again.
type SwapAller interface {
	SwapAll(ctx context.Context, swaps []Swap) (ok []bool, err error)
}

// ErrStore wraps every error the detector got from its store. The record that met it was
// not fully processed: the caller must retry it (in Lambda, the SQS message is reported as
// failed and redelivered). Retrying is safe: claims are conditional and finding ids are
// deterministic.
var ErrStore = errors.New("detect: store")

// Immutable reports whether the value under key never changes once written (who issued an
// access key): a store may keep such values in memory and skip reading them again. Stores
// ask this instead of reading the keys' layout, which is the detector's own.
func Immutable(key string) bool { return strings.HasPrefix(key, keyIssued) }

// IsFindingKey reports whether the value under key is a Finding's JSON: for tools and
// tests that list the findings a store holds.
func IsFindingKey(key string) bool { return strings.HasPrefix(key, keyFinding) }

// Keys of the store. Account ids, role and function names cannot contain '#'.
const (
	keyAccount   = "acct#"    // acct#ACCOUNT -> first observed
	keyRole      = "role#"    // role#ACCOUNT#ROLE -> a Lambda execution role, last seen
	keyFunction  = "fn#"      // fn#ACCOUNT#ROLE#FUNCTION -> a function of that role, last seen
	keyIssued    = "key#"     // key#ACCESSKEY -> who issued the key (the caller's account's record)
	keyIssuedBy  = "keyo#"    // keyo#ACCESSKEY -> who issued it, as the role owner's copy of a cross-account AssumeRole says
	keyInside    = "inside#"  // inside#ACCESSKEY -> the key was used from inside AWS
	keyASN       = "asn#"     // asn#ACCOUNT#ASN -> people of the account used this ASN
	keyFinding   = "find#"    // find#ACCOUNT#KIND#SUBJECT#TITLE#PERIOD -> the finding of one dedup period
	keyPresigned = "pre#"     // pre#ACCOUNT#KIND#SUBJECT#PERIOD -> the period's presigned-URL uses
	keyCall      = "call#"    // call#RECIPIENT#EVENTID -> the finding a call was counted in
	keyAssumers  = "assumed#" // assumed#ACCOUNT#ROLE -> AssumeRole of a Lambda role by other identities
	keyFnRole    = "fnrole#"  // fnrole#ACCOUNT#FUNCTION -> the role a function was last given
	keyInventory = "inv#"     // inv#ACCOUNT -> the account's functions, as ListFunctions gave them
)
