package detect

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/outsider-sec/outsider/pkg/awsid"
	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// Sharding. All state is an account's (DESIGN §9), so decisions shard by account: a record
// goes to the shard of the account that logged it (recipientAccountId). One record is
// decided on two sides: a cross-account AssumeRole, which the caller's account logs with
// the caller's identity. Whose key it issued (a function's chained token, a person's) is the
// caller's account's to say, and the key is then used in the role owner's account: the
// record also goes to the role owner's shard as a foreign copy, which takes what the
// caller's shard concluded about it from an Exchange, at the same place in event-time
// order, and adds what is the role owner's to learn (who assumes its role). Shards deciding
// in event-time order therefore conclude what one detector concludes, for chains across
// accounts too.

// ForeignRole returns the account of the role a cross-account AssumeRole obtained a key
// of, when another account logged it: the account whose shard also takes the record.
func ForeignRole(r *cloudtrail.Record) (string, bool) {
	if r.Source != "sts.amazonaws.com" || !strings.HasPrefix(r.Name, "AssumeRole") {
		return "", false
	}
	a := awsid.Account(r.Request.RoleARN)
	return a, a != "" && r.RecipientAccount != "" && a != r.RecipientAccount
}

// Exchange hands what a caller's shard concluded about a cross-account AssumeRole to the
// role owner's shard. Every record handed to two shards is published once by the caller's
// shard and taken once by the owner's.
type Exchange struct {
	mu    sync.Mutex
	slots map[*cloudtrail.Record]*exchangeSlot
}

type exchangeSlot struct {
	once  sync.Once
	done  chan struct{}
	is    *issued // nil: the caller's shard learned no key from it
	first int64   // when the caller's shard first observed the caller's account (0: unknown)
}

// NewExchange returns an empty exchange.
func NewExchange() *Exchange {
	return &Exchange{slots: map[*cloudtrail.Record]*exchangeSlot{}}
}

func (x *Exchange) slot(r *cloudtrail.Record) *exchangeSlot {
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.slots[r]
	if s == nil {
		s = &exchangeSlot{done: make(chan struct{})}
		x.slots[r] = s
	}
	return s
}

// publish says what r issued, and when its caller's account was first observed; only its
// first call counts.
func (x *Exchange) publish(r *cloudtrail.Record, is *issued, first int64) {
	s := x.slot(r)
	s.once.Do(func() {
		s.is, s.first = is, first
		close(s.done)
	})
}

// take waits for the caller's shard to publish r.
func (x *Exchange) take(ctx context.Context, r *cloudtrail.Record) (*issued, int64, error) {
	s := x.slot(r)
	select {
	case <-s.done:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	x.mu.Lock()
	delete(x.slots, r)
	x.mu.Unlock()
	return s.is, s.first, nil
}

// SetShard makes the detector one shard of several over one store: owns tells the
// accounts it decides for; x is shared by all the shards. The caller must hand each shard
// the records of its accounts, and each cross-account AssumeRole (ForeignRole) to the role
// owner's shard too, every shard in the same event-time order.
func (d *Detector) SetShard(owns func(account string) bool, x *Exchange) {
	d.owns, d.exchange = owns, x
}

// SetForget tells a detector that decides in event-time order (a replay, its records
// reordered within a window) that no later record asks about a fact or a key's issuer
// that expired age before the newest event time it decided: such an item is not written
// at a flush, only marked written. A store that forgets by the same rule (store.Bolt's
// Forget) would drop it unwritten at its next commit anyway, after its encoding, its
// conditional write and its copy: most of a dense replay's items are its keys, dead hours
// after their last use. A detector that is the only one over its store (no SetShard) also
// holds its issuers in memory until a flush, and what expires soon after that horizon
// until a later one (heldBack); its last flush (Flush) writes everything still live. age
// must leave the store's own horizon at or past the detector's.
func (d *Detector) SetForget(age time.Duration) { d.forget = int64(age / time.Second) }

// foreignCopy: the record is another shard's, handed to this one as its role's owner.
func (d *Detector) foreignCopy(r *cloudtrail.Record) bool {
	return d.owns != nil && !d.owns(r.RecipientAccount)
}

// sharedCaller: this shard decides a cross-account AssumeRole whose role another shard
// owns, and publishes what it concluded.
func (d *Detector) sharedCaller(r *cloudtrail.Record) bool {
	if d.owns == nil {
		return false
	}
	a, ok := ForeignRole(r)
	return ok && !d.owns(a)
}

// Abandon says, for each cross-account AssumeRole of recs this shard was to decide and
// did not (its input failed part way, and the records after the failure were skipped),
// that it taught nothing: the role owners' shards waiting for them go on.
func (d *Detector) Abandon(recs []*cloudtrail.Record) {
	if d.exchange == nil {
		return
	}
	for _, r := range recs {
		if !d.foreignCopy(r) && d.sharedCaller(r) {
			d.exchange.publish(r, nil, 0)
		}
	}
}

// processForeign takes a foreign copy: who obtained the key, as the caller's shard
// concluded, and who assumes the role, which is this shard's to keep.
func (d *Detector) processForeign(ctx context.Context, r *cloudtrail.Record) error {
	is, first, err := d.exchange.take(ctx, r)
	if err != nil || is == nil {
		return err
	}
	d.observedElsewhere(r.RecipientAccount, first)
	if is.Lambda {
		d.learnRole(is.Account, is.Role, r.Time)
	}
	d.remember(r.IssuedKeyID, is) // the caller's shard wrote it to the store
	if is.Lambda {
		return nil
	}
	return d.noteAssumer(ctx, r, is.Account, is.Role, is.By)
}

// firstObserved is when this detector first observed an account's own trail, as it holds
// it (0: not held).
func (d *Detector) firstObserved(account string) int64 {
	if e := d.lookup(fact{prefix: keyAccount, a: account}); e != nil {
		return e.v.First
	}
	return 0
}

// observedElsewhere takes when another shard first observed an account it decides for: a
// function's chained key, used in this shard's accounts, raises findings on the function's
// account, whose activation is that shard's to know. The other shard writes it to the
// store at the next write, which every shard does at the same batch; until then only this
// copy in memory knows it. It is never written from here.
func (d *Detector) observedElsewhere(account string, first int64) {
	if account == "" || first == 0 {
		return
	}
	f := fact{prefix: keyAccount, a: account}
	e := d.lookup(f)
	if e == nil {
		e = d.hold(f)
	}
	if e.v.First == 0 || first < e.v.First {
		e.v.First = first
	}
}
