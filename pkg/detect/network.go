package detect

import (
	"context"
	"net/netip"

	"github.com/gaissmai/bart"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// IANA's special-purpose address registries, by whether their addresses are globally
// reachable. A call from a range marked not globally reachable came from inside a network
// (a VPC, through an endpoint or a NAT), not from the internet. Ranges marked globally
// reachable inside a larger one that is not (AMT 2001:3::/32 inside 2001::/23, the anycast
// addresses of 192.0.0.0/24) are public, and so are those marked N/A whose addresses are the
// internet's: Teredo 2001::/32, 6to4 2002::/16 and its deprecated relay 192.88.99.0/24. The
// longest matching prefix decides. Multicast is not a source: inside.
// https://www.iana.org/assignments/iana-ipv4-special-registry/
// https://www.iana.org/assignments/iana-ipv6-special-registry/
var specialPrefixes = []struct {
	prefix    string
	reachable bool
}{
	{"0.0.0.0/8", false}, {"10.0.0.0/8", false}, {"100.64.0.0/10", false}, {"127.0.0.0/8", false},
	{"169.254.0.0/16", false}, {"172.16.0.0/12", false}, {"192.0.0.0/24", false},
	{"192.0.0.9/32", true}, {"192.0.0.10/32", true}, {"192.0.2.0/24", false},
	{"192.31.196.0/24", true}, {"192.52.193.0/24", true}, {"192.88.99.0/24", true},
	{"192.168.0.0/16", false}, {"192.175.48.0/24", true}, {"198.18.0.0/15", false},
	{"198.51.100.0/24", false}, {"203.0.113.0/24", false}, {"224.0.0.0/4", false}, {"240.0.0.0/4", false},
	{"::/128", false}, {"::1/128", false}, {"::ffff:0:0/96", false}, {"64:ff9b::/96", true},
	{"64:ff9b:1::/48", false}, {"100::/64", false}, {"100:0:0:1::/64", false},
	{"2001::/23", false}, {"2001::/32", true}, {"2001:1::1/128", true}, {"2001:1::2/128", true},
	{"2001:1::3/128", true}, {"2001:2::/48", false}, {"2001:3::/32", true}, {"2001:4:112::/48", true},
	{"2001:20::/28", true}, {"2001:30::/28", true}, {"2001:db8::/32", false}, {"2002::/16", true},
	{"2620:4f:8000::/48", true}, {"3fff::/20", false}, {"5f00::/16", false}, {"fc00::/7", false},
	{"fe80::/10", false}, {"ff00::/8", false},
}

var special = func() *bart.Table[bool] {
	t := new(bart.Table[bool])
	for _, s := range specialPrefixes {
		t.Insert(netip.MustParsePrefix(s.prefix), s.reachable)
	}
	return t
}()

// Public reports whether a is a globally reachable unicast address.
func Public(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	reachable, found := special.Lookup(a.Unmap())
	return !found || reachable
}

// Where says where a call came from.
type Where int

const (
	// NotAnAddress: a service name ("lambda.amazonaws.com"), "AWS Internal", or anything
	// that does not parse as an address. Inside.
	NotAnAddress Where = iota
	// Private: not globally reachable (a VPC address, through an endpoint or not). Inside.
	Private
	// AWS: a public address in AWS's published ranges. Inside.
	AWS
	// Trusted: public, outside AWS, in the operator's trusted networks. Not outside.
	Trusted
	// Outside: public, outside AWS, not trusted.
	Outside
	// ForeignEndpoint: through a VPC endpoint of an account that is not the
	// organisation's: the thief's own network inside AWS. Outside, whatever the address.
	ForeignEndpoint
)

func (w Where) String() string {
	return [...]string{"not-an-address", "private", "aws", "trusted", "outside", "foreign-vpc-endpoint"}[w]
}

func (w Where) outside() bool { return w == Outside || w == ForeignEndpoint }

// RangeLookup answers whether an address is in AWS's published ranges.
type RangeLookup interface {
	Contains(netip.Addr) bool
}

// RegionLookup tells the region of the AWS prefix holding an address ("GLOBAL" for global
// services, "" when none).
type RegionLookup interface {
	Region(netip.Addr) string
}

// classify places a call's source. A call through a VPC endpoint of the organisation is
// inside whatever its address: the internet cannot reach an endpoint. One through an
// endpoint of any other account (vpcEndpointAccountId, where the record has it) is outside
// whatever its address. Trusted networks only ever move a public address out of "outside".
// https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html (vpcEndpointId, vpcEndpointAccountId)
func (d *Detector) classify(ctx context.Context, r *cloudtrail.Record) (Where, error) {
	a := r.Addr
	if r.VPCEndpointID != "" {
		if r.VPCEndpointAcct == "" {
			return Private, nil
		}
		ours, err := d.ours(ctx, r.VPCEndpointAcct, r.Time)
		if err != nil || ours {
			return Private, err
		}
		return ForeignEndpoint, nil
	}
	switch {
	case !a.IsValid():
		return NotAnAddress, nil
	case !Public(a):
		return Private, nil
	case d.ranges.Contains(a):
		return AWS, nil
	case d.trusted.Lookup(a):
		return Trusted, nil
	}
	return Outside, nil
}

// Rank orders the records of one second: 0 for a record that may teach, 1 for a role
// session's call from a public address outside AWS, which is decided. Within a second,
// what teaches is applied before what is decided, whatever the order of the input.
func (d *Detector) Rank(r *cloudtrail.Record) int {
	id := &r.Identity
	a := r.Addr
	if id.Type != cloudtrail.IdentityAssumedRole || !a.IsValid() || r.VPCEndpointID != "" ||
		r.Source == "sts.amazonaws.com" || !Public(a) || d.ranges.Contains(a) {
		return 0
	}
	return 1
}
